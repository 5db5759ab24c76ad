// Package metrics is what `ec2net run` tells Prometheus: a text-format
// file the node_exporter textfile collector reads (written atomically, so
// a scrape never sees half of it), and optionally a /metrics listener on
// localhost. text.go hands the series to the Prometheus text encoder.
package metrics

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf"
	dto "github.com/prometheus/client_model/go"
)

// Metrics holds every series ec2net exports. Its methods are safe for
// concurrent use (IMDS latencies come from the readers' goroutines).
type Metrics struct {
	mu sync.Mutex

	enis      *vec       // ec2net_enis{state}
	addrs     *vec       // ec2net_addresses{kind}
	reconcile *vec       // ec2net_reconciles_total{trigger}
	failures  *vec       // ec2net_reconcile_failures_total{trigger}
	repairs   *vec       // ec2net_repairs_total{kind}
	reads     *vec       // ec2net_imds_reads_total{outcome}
	requests  *vec       // ec2net_imds_requests_total{outcome}, from imdsStats at each export
	latency   *histogram // ec2net_imds_request_duration_seconds
	lastRead  *vec       // ec2net_imds_last_success_timestamp_seconds
	lastPass  *vec       // ec2net_last_reconcile_timestamp_seconds
	verified  *vec       // ec2net_last_verification_timestamp_seconds
	info      *vec       // ec2net_build_info{version,goversion}
	start     *vec       // ec2net_start_time_seconds

	imdsStats func() imds.Stats
}

// States lists every ENI state, so that ec2net_enis has a series (0 when
// none) for each and an alert on "shadowed > 0" never sees an absent
// series.
var States = []netconf.State{
	netconf.StateConfigured, netconf.StateDrift, netconf.StatePending, netconf.StateInvalid, netconf.StateUnknown,
	netconf.StateExcluded, netconf.StateAbsent, netconf.StateUnlisted, netconf.StateEFAOnly,
	netconf.StateShadowed, netconf.StateWrongPath, netconf.StateDown, netconf.StateRPFilter,
}

// New makes the series. imdsStats, when not nil, is read at every
// export for ec2net_imds_requests_total{outcome}.
func New(version string, started time.Time, imdsStats func() imds.Stats) *Metrics {
	m := &Metrics{imdsStats: imdsStats}
	m.enis = newVec(dto.MetricType_GAUGE, "ec2net_enis",
		"ENIs by state, as `ec2net status` reports them (path-verified).", "state")
	m.addrs = newVec(dto.MetricType_GAUGE, "ec2net_addresses",
		"Addresses of the ENIs ec2net configures: wanted (IMDS), present (on the link), verified (the route lookup takes its ENI).",
		"kind")
	m.reconcile = newVec(dto.MetricType_COUNTER, "ec2net_reconciles_total",
		"Reconcile passes, by what caused them (imds, link change, repair, events lost).", "trigger")
	m.failures = newVec(dto.MetricType_COUNTER, "ec2net_reconcile_failures_total",
		"Reconcile passes that failed, or in which a change failed, by trigger.", "trigger")
	m.repairs = newVec(dto.MetricType_COUNTER, "ec2net_repairs_total",
		"Objects ec2net restored after another program deleted them, by kind (addr, route, rule, link).", "kind")
	m.reads = newVec(dto.MetricType_COUNTER, "ec2net_imds_reads_total",
		"IMDS reads (a snapshot of every ENI or of some), by outcome (ok, error).", "outcome")
	m.requests = newVec(dto.MetricType_COUNTER, "ec2net_imds_requests_total",
		"HTTP requests to IMDS (token PUTs included), by outcome.", "outcome")
	m.latency = newHistogram("ec2net_imds_request_duration_seconds",
		"Time from sending an IMDS HTTP request to its response headers (token PUTs included).",
		[]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5})
	m.lastRead = newVec(dto.MetricType_GAUGE, "ec2net_imds_last_success_timestamp_seconds",
		"When IMDS was last read successfully (Unix time; 0: never).")
	m.lastPass = newVec(dto.MetricType_GAUGE, "ec2net_last_reconcile_timestamp_seconds",
		"When the last reconcile pass completed (Unix time; 0: never).")
	m.verified = newVec(dto.MetricType_GAUGE, "ec2net_last_verification_timestamp_seconds",
		"When the paths of every address were last verified (Unix time; 0: never).")
	m.info = newVec(dto.MetricType_GAUGE, "ec2net_build_info", "ec2net's version and Go version (always 1).", "version", "goversion")
	m.start = newVec(dto.MetricType_GAUGE, "ec2net_start_time_seconds", "When the daemon started (Unix time).")

	m.info.set(1, version, runtime.Version())
	m.start.set(float64(started.Unix()))
	for _, g := range []*vec{m.lastRead, m.lastPass, m.verified} {
		g.touch()
	}
	for _, s := range States {
		m.enis.touch(s.String())
	}
	for _, k := range []string{"wanted", "present", "verified"} {
		m.addrs.touch(k)
	}
	for _, o := range []string{"ok", "error"} {
		m.reads.touch(o)
	}
	for _, k := range []string{"addr", "route", "rule", "link"} {
		m.repairs.touch(k)
	}
	return m
}

// Reconciled counts a pass; failed: it failed or a change in it did.
func (m *Metrics) Reconciled(trigger string, failed bool, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reconcile.add(1, trigger)
	m.failures.touch(trigger) // the series exists, at 0
	if failed {
		m.failures.add(1, trigger)
	}
	m.lastPass.set(float64(at.Unix()))
}

// Repaired counts objects restored, by kind.
func (m *Metrics) Repaired(kind string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.repairs.add(float64(n), kind)
}

// Read counts an IMDS read.
func (m *Metrics) Read(ok bool, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !ok {
		m.reads.add(1, "error")
		return
	}
	m.reads.add(1, "ok")
	m.lastRead.set(float64(at.Unix()))
}

// ObserveIMDS records one IMDS request's latency.
func (m *Metrics) ObserveIMDS(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.latency.observe(d.Seconds())
}

// SetStatus sets the ENI and address gauges from a path-verified status.
func (m *Metrics) SetStatus(rows []netconf.ENIStatus, at time.Time) {
	counts := map[string]int{}
	var wanted, present, verified int
	for _, r := range rows {
		counts[r.State.String()]++
		on := map[netip.Addr]bool{}
		for _, a := range r.LinkAddrs {
			on[a] = true
		}
		for _, a := range r.Addrs {
			if a.Prefix.IsValid() {
				continue // a delegated prefix's stand-in: not an address of the link
			}
			wanted++
			if on[a.Address] {
				present++
			}
			if a.State == netconf.StateConfigured {
				verified++
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range States {
		m.enis.set(float64(counts[s.String()]), s.String())
	}
	m.addrs.set(float64(wanted), "wanted")
	m.addrs.set(float64(present), "present")
	m.addrs.set(float64(verified), "verified")
	m.verified.set(float64(at.Unix()))
}

// Text encodes every metric in the Prometheus text format, families in
// name order.
func (m *Metrics) Text() ([]byte, error) {
	var stats *imds.Stats
	if m.imdsStats != nil {
		s := m.imdsStats()
		stats = &s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if stats != nil {
		for _, o := range []struct {
			name string
			n    int64
		}{{"ok", stats.OK}, {"not_found", stats.NotFound}, {"unauthorized", stats.Unauthorized}, {"forbidden", stats.Forbidden},
			{"throttled", stats.Throttled}, {"server_error", stats.ServerError}, {"other_status", stats.OtherStatus},
			{"network_error", stats.NetworkError}} {
			m.requests.set(float64(o.n), o.name)
		}
	}
	var fams []*dto.MetricFamily
	for _, v := range []*vec{m.enis, m.addrs, m.reconcile, m.failures, m.repairs, m.reads, m.requests,
		m.lastRead, m.lastPass, m.verified, m.info, m.start} {
		if len(v.series) > 0 {
			fams = append(fams, v.family())
		}
	}
	return encode(append(fams, m.latency.family()))
}

// WriteFile writes the text format to path atomically (a temporary file
// in the same directory, renamed over it), readable by everyone: the
// node_exporter textfile collector does not run as root.
func (m *Metrics) WriteFile(path string) error {
	b, err := m.Text()
	if err != nil {
		return err
	}
	return writeAtomic(path, b, 0o644)
}

func writeAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename, nothing to remove
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}
