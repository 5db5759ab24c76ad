package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ec2net/ec2net/agent/imds"
)

// RuntimeFile is where a running daemon publishes what `ec2net status`
// and `ec2net doctor` read about it, beside the ownership record: a small
// JSON document (Runtime), replaced atomically after every read and
// reconcile.
func RuntimeFile(stateDir string) string { return filepath.Join(stateDir, "daemon.json") }

// MetricsFile is where the daemon writes its Prometheus metrics:
// /run/ec2net/metrics/<netns cookie>.prom, in a directory of its own that
// holds nothing else, mode 0755 with files 0644 (node_exporter's textfile
// collector, pointed at /run/ec2net/metrics, runs as another user; the
// state directories are root's only).
func MetricsFile(stateDir string) string {
	return filepath.Join(filepath.Dir(filepath.Clean(stateDir)), "metrics", filepath.Base(stateDir)+".prom")
}

// RuntimeVersion is the version of Runtime's JSON shape: fields are only
// added within a version.
const RuntimeVersion = 1

// Runtime is what the daemon publishes.
type Runtime struct {
	Version        int       `json:"version"` // RuntimeVersion
	PID            int       `json:"pid"`
	EC2NetVersion  string    `json:"ec2net_version"`
	Started        time.Time `json:"started"`
	Updated        time.Time `json:"updated"`
	Stopped        time.Time `json:"stopped"`           // zero while running
	LastRead       time.Time `json:"last_imds_read"`    // last successful IMDS read (zero: none yet)
	LastReadFailed time.Time `json:"last_imds_failure"` // last failed IMDS read
	LastReadError  string    `json:"last_imds_error"`   // its error; "" once a read succeeds again
	ReadsOK        int64     `json:"imds_reads_ok"`     // successful reads since start
	ReadsFailed    int64     `json:"imds_reads_failed"` // failed reads since start
	LastReconcile  time.Time `json:"last_reconcile"`    // last reconcile pass (zero: none yet)
	LastTrigger    string    `json:"last_reconcile_trigger"`
	LastFailure    string    `json:"last_reconcile_error"` // the last pass's error or failed change; "" when it succeeded
	// Reconciles and ReconcileFailures count passes by trigger (imds,
	// link change, repair, events lost).
	Reconciles        map[string]int64 `json:"reconciles"`
	ReconcileFailures map[string]int64 `json:"reconcile_failures"`
	// Repairs counts objects restored after another program deleted
	// them, by kind (addr, route, rule, link); RepairTimes are the repair
	// passes of the last hour (at most maxRepairTimes).
	Repairs     map[string]int64 `json:"repairs"`
	RepairTimes []time.Time      `json:"repair_times"`
	// ENIs counts ENIs by path-verified state at LastVerified.
	ENIs         map[string]int `json:"enis"`
	LastVerified time.Time      `json:"last_verified"`
	IMDS         imds.Stats     `json:"imds_requests"`
}

const maxRepairTimes = 256

func newRuntime(version string, now time.Time) Runtime {
	return Runtime{Version: RuntimeVersion, PID: os.Getpid(), EC2NetVersion: version, Started: now, Updated: now,
		Reconciles: map[string]int64{}, ReconcileFailures: map[string]int64{}, Repairs: map[string]int64{},
		RepairTimes: []time.Time{}, ENIs: map[string]int{}}
}

// RepairsSince counts the repair passes since t.
func (r *Runtime) RepairsSince(t time.Time) int {
	n := 0
	for _, at := range r.RepairTimes {
		if !at.Before(t) {
			n++
		}
	}
	return n
}

func (r *Runtime) noteRepair(now time.Time) {
	keep := r.RepairTimes[:0]
	for _, at := range r.RepairTimes {
		if now.Sub(at) < time.Hour {
			keep = append(keep, at)
		}
	}
	r.RepairTimes = append(keep, now)
	if n := len(r.RepairTimes); n > maxRepairTimes {
		r.RepairTimes = r.RepairTimes[n-maxRepairTimes:]
	}
}

// ReadRuntime reads the runtime file of a state directory. An error
// wrapping os.ErrNotExist: no daemon ever published there; one wrapping
// os.ErrPermission: the caller may not read it (not root).
func ReadRuntime(stateDir string) (*Runtime, error) {
	b, err := os.ReadFile(RuntimeFile(stateDir))
	if err != nil {
		return nil, err
	}
	var r Runtime
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", RuntimeFile(stateDir), err)
	}
	return &r, nil
}

func writeRuntime(stateDir string, r *Runtime) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(stateDir, ".daemon.json.*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), RuntimeFile(stateDir))
}

// Liveness is what status and doctor say about the daemon of a namespace.
type Liveness struct {
	PID     int      // the running daemon's pid; 0 when none runs; -1 running, pid unknown
	Runtime *Runtime // what it (or the last one) published; nil when nothing could be read
	Err     error    // why the state directory could not be read (not root), if so
}

// Live tells whether a daemon holds the namespace of stateDir, and what
// it published.
func Live(stateDir string) Liveness {
	if _, err := os.Stat(PIDFile(stateDir)); err != nil && errors.Is(err, os.ErrPermission) {
		return Liveness{Err: err}
	}
	lv := Liveness{PID: Running(stateDir)}
	rt, err := ReadRuntime(stateDir)
	switch {
	case err == nil:
		lv.Runtime = rt
	case !errors.Is(err, os.ErrNotExist):
		lv.Err = err
	}
	return lv
}

// Summary is the one line status prints about the daemon.
func (lv Liveness) Summary(now time.Time) string {
	switch {
	case lv.Err != nil && errors.Is(lv.Err, os.ErrPermission):
		return "daemon: unknown (its state is root's: run as root to see it)"
	case lv.PID == 0 && lv.Runtime != nil && !lv.Runtime.Stopped.IsZero():
		return fmt.Sprintf("daemon: not running (stopped %s ago)", ago(now, lv.Runtime.Stopped))
	case lv.PID == 0:
		return "daemon: not running (nothing repairs what others delete; systemctl start ec2net)"
	case lv.Runtime == nil || lv.Runtime.PID != lv.PID:
		return fmt.Sprintf("daemon: running (pid %d), nothing published yet", lv.PID)
	}
	rt := lv.Runtime
	s := fmt.Sprintf("daemon: running (pid %d) since %s (%s ago)", rt.PID, rt.Started.Local().Format(time.DateTime), ago(now, rt.Started))
	if rt.LastRead.IsZero() {
		s += ", no successful IMDS read yet"
	} else {
		s += ", last IMDS read " + ago(now, rt.LastRead) + " ago"
	}
	if rt.LastReadError != "" {
		s += " (failing since " + ago(now, rt.LastReadFailed) + ": " + rt.LastReadError + ")"
	}
	if !rt.LastReconcile.IsZero() {
		s += ", last reconcile " + ago(now, rt.LastReconcile) + " ago"
	}
	if n := rt.RepairsSince(now.Add(-time.Hour)); n > 0 {
		s += fmt.Sprintf(", %d repairs in the last hour", n)
	}
	return s
}

// ago prints a duration the way people read it: "12 s", "3 min", "2 h".
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0 s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h", int(d.Hours()))
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}
