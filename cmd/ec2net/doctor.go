package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ec2net/ec2net/agent/converge"
	"github.com/ec2net/ec2net/agent/daemon"
	"github.com/ec2net/ec2net/agent/hostcheck"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf"
)

// `ec2net doctor`: the command an SRE runs first. Every check prints one
// line (ok, note, PROBLEM, unchecked) saying what it found and what to do;
// exit 0 when nothing needs doing, 1 when something does, 2 when some
// check could not run and nothing else was found.

const exitUnchecked = 2

type doctorOpts struct {
	bundle *string
	json   *bool
}

func doctorFlags(fs *flag.FlagSet) any {
	return doctorOpts{
		bundle: fs.String("bundle", "", "also write a support tarball (.tar.gz) to this file: status, findings, rules, routes, addresses, recent journal lines, configuration, versions (no IMDS token, no user data)"),
		json:   fs.Bool("json", false, "print the findings as JSON"),
	}
}

// doctorReport is what doctor found.
type doctorReport struct {
	Version  int                 `json:"version"`
	Findings []hostcheck.Finding `json:"findings"`
	Status   statusJSON          `json:"status"`
}

func (r *doctorReport) add(sev hostcheck.Severity, check, link, text, fix string) {
	r.Findings = append(r.Findings, hostcheck.Finding{Severity: sev, Check: check, Link: link, Text: text, Fix: fix})
}

func (r *doctorReport) exitCode() int {
	unchecked := false
	for _, f := range r.Findings {
		switch f.Severity {
		case hostcheck.Problem:
			return exitError
		case hostcheck.Unchecked:
			unchecked = true
		}
	}
	if unchecked {
		return exitUnchecked
	}
	return exitOK
}

func cmdDoctor(ctx context.Context, c *call) int {
	o := c.opts.(doctorOpts)
	e, err := newEnv(c.cfg, true, true)
	if err != nil {
		fmt.Fprintf(c.stderr, "ec2net doctor: could not check anything: %s\n", (&env{cfg: c.cfg}).explain(err))
		return exitUnchecked
	}
	defer e.close()
	r := runDoctor(ctx, e)
	if *o.json {
		writeJSON(c.stdout, r)
	} else {
		printFindings(c.stdout, r.Findings)
	}
	if *o.bundle != "" {
		if err := writeBundle(ctx, *o.bundle, e, r); err != nil {
			fmt.Fprintf(c.stderr, "ec2net doctor: bundle: %v\n", err)
			return exitError
		}
		fmt.Fprintf(c.stderr, "ec2net doctor: support bundle written to %s\n", *o.bundle)
	}
	return r.exitCode()
}

func runDoctor(ctx context.Context, e *env) *doctorReport {
	r := &doctorReport{Version: jsonVersion}
	snap := r.checkIMDS(ctx, e)
	cfg, signs, cniErr := converge.Resolve(e.cfg, e.rec) // on error: shown as all, said in a note
	if cniErr != nil {
		r.add(hostcheck.Unchecked, "vpc-cni", "", cniErr.Error(), "")
	}
	if len(signs) > 0 {
		r.add(hostcheck.Note, "vpc-cni", "", "the Amazon VPC CNI manages this host's secondary ENIs ("+strings.Join(signs, "; ")+
			"): ec2net configures the primary ENI only (secondary-enis = auto)", "")
	}
	rows, err := e.rec.Status(snap, cfg)
	if err != nil {
		r.add(hostcheck.Unchecked, "paths", "", "cannot read the kernel's configuration: "+e.explain(err), "")
	}
	if err := e.rec.RecordError(); err != nil {
		r.add(hostcheck.Unchecked, "ownership", "", "ownership record not readable ("+err.Error()+"): ec2net's addresses cannot be told from others'",
			"run as root (sudo ec2net doctor)")
	}
	r.checkENIs(rows)
	if snap != nil {
		if p, err := e.rec.Plan(snap, cfg); err == nil {
			for _, f := range p.Foreign {
				r.add(hostcheck.Note, "foreign", "", "left alone, not ec2net's: "+f, "")
			}
		}
	}
	host := hostLinks(rows, cfg)
	r.Findings = append(r.Findings, hostcheck.All(host)...)
	lv := daemon.Live(e.rec.StateDir())
	r.checkDaemon(lv, e.cfg.RefreshInterval)
	r.Status = statusJSON{Version: jsonVersion, ENIs: nonNilRows(rows), Totals: map[string]int{}, IMDS: e.imds.Stats(),
		Daemon: toDaemonJSON(lv, time.Now()), Host: hostProblems(host), Notes: []string{}}
	r.Status.Healthy = snap != nil
	for _, row := range rows {
		r.Status.Totals[row.State.String()]++
		r.Status.Healthy = r.Status.Healthy && row.State.Healthy()
	}
	if snap == nil {
		r.Status.IMDSError = "not read"
	}
	return r
}

// checkIMDS reads IMDS as the daemon does (token PUT from this host),
// then asks without a token to tell whether IMDSv2 is enforced.
func (r *doctorReport) checkIMDS(ctx context.Context, e *env) *imds.Snapshot {
	snap, err := e.imds.SnapshotFull(ctx)
	if err != nil {
		fix := ""
		if inContainer() && (errors.Is(err, imds.ErrUnreachable) || errors.Is(err, context.DeadlineExceeded)) {
			fix = "this runs in a container: the token's answer needs a hop limit of 2: " +
				"aws ec2 modify-instance-metadata-options --instance-id <id> --http-put-response-hop-limit 2"
		}
		r.add(hostcheck.Problem, "imds", "", e.explain(err), fix)
		return nil
	}
	st := e.imds.Stats()
	r.add(hostcheck.OK, "imds", "", fmt.Sprintf("IMDS answers at %s (token PUT from this host, %d requests, %d ENIs listed)",
		e.imds.Endpoint(), st.Requests, len(snap.ENIs)), "")
	switch code := tokenless(ctx, e.imds.Endpoint()); code {
	case http.StatusUnauthorized:
		r.add(hostcheck.OK, "imdsv2", "", "IMDSv2 is enforced (a request without a token gets 401)", "")
	case http.StatusOK:
		r.add(hostcheck.Note, "imdsv2", "", "IMDSv1 is allowed on this instance (requests without a token are answered); ec2net uses IMDSv2 only",
			"require tokens: aws ec2 modify-instance-metadata-options --instance-id <id> --http-tokens required")
	default:
		r.add(hostcheck.Unchecked, "imdsv2", "", fmt.Sprintf("could not tell whether IMDSv2 is enforced (a request without a token got %d)", code), "")
	}
	return snap
}

// tokenless asks IMDS for its top directory without a token and returns
// the HTTP status (0 when it did not answer).
func tokenless(ctx context.Context, endpoint string) int {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(endpoint, "/")+"/latest/meta-data/", nil)
	if err != nil {
		return 0
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode
}

func inContainer() bool {
	if os.Getenv("container") != "" {
		return true
	}
	for _, p := range []string{"/.dockerenv", "/run/.containerenv"} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	b, _ := os.ReadFile("/proc/1/cgroup")
	return strings.Contains(string(b), "docker") || strings.Contains(string(b), "kubepods") || strings.Contains(string(b), "containerd")
}

// checkENIs reports every ENI, and every address off its path.
func (r *doctorReport) checkENIs(rows []netconf.ENIStatus) {
	for _, row := range rows {
		name := orDash(row.Link, row.MAC)
		id := name + " (" + orDash(row.ENIID, row.MAC) + ")"
		off := 0
		for _, a := range row.Addrs {
			if a.State != netconf.StateConfigured {
				off++
				r.add(hostcheck.Problem, "path", row.Link, name+" "+a.Subject()+" is "+a.State.String()+": "+a.Cause, "")
			}
		}
		switch {
		case off > 0:
		case row.State == netconf.StateConfigured:
			r.add(hostcheck.OK, "path", row.Link, fmt.Sprintf("%s: %d addresses, each leaving through its ENI", id, len(row.Addrs)), "")
		case row.State.Healthy(), row.State == netconf.StatePending, row.State == netconf.StateDown:
			r.add(hostcheck.Note, "eni", row.Link, id+" is "+row.State.String()+": "+row.Reason, "")
		case row.State == netconf.StateDrift:
			r.add(hostcheck.Problem, "eni", row.Link, id+" has changes pending: "+row.Reason,
				"ec2net apply (the daemon does it at its next pass; if it does not, its journal says why)")
		default:
			r.add(hostcheck.Problem, "eni", row.Link, id+" is "+row.State.String()+": "+row.Reason, "")
		}
	}
}

// checkDaemon says whether the daemon runs and keeps up.
func (r *doctorReport) checkDaemon(lv daemon.Liveness, refresh time.Duration) {
	now := time.Now()
	switch {
	case lv.Err != nil && errors.Is(lv.Err, os.ErrPermission):
		r.add(hostcheck.Unchecked, "daemon", "", "cannot read the daemon's state (root's)", "run as root (sudo ec2net doctor)")
		return
	case lv.PID == 0:
		r.add(hostcheck.Problem, "daemon", "", lv.Summary(now)+": nothing configures hot-attached ENIs or repairs what other programs delete",
			"systemctl enable --now ec2net")
		return
	}
	r.add(hostcheck.OK, "daemon", "", lv.Summary(now), "")
	rt := lv.Runtime
	if rt == nil || rt.PID != lv.PID {
		return
	}
	if rt.LastReadError != "" {
		r.add(hostcheck.Problem, "daemon", "", "the daemon's IMDS reads fail since "+rt.LastReadFailed.Local().Format(time.DateTime)+": "+rt.LastReadError,
			"see the IMDS finding above; the configuration is kept meanwhile")
	} else if !rt.LastRead.IsZero() && now.Sub(rt.LastRead) > 3*refresh+time.Minute {
		r.add(hostcheck.Problem, "daemon", "", "the daemon's last IMDS read was "+now.Sub(rt.LastRead).Round(time.Second).String()+" ago (refresh-interval "+refresh.String()+")",
			"journalctl -u ec2net; systemctl restart ec2net if it is stuck")
	}
	if n := rt.RepairsSince(now.Add(-time.Hour)); n > 0 {
		r.add(hostcheck.Note, "daemon", "", fmt.Sprintf("another program deleted ec2net's objects %d times in the last hour (each restored)", n),
			"journalctl -u ec2net MESSAGE_ID=385da8ec41d7482da264845417b14a7a names what and when; the network-manager findings say who")
	}
}

// printFindings prints one line per finding, then a count.
func printFindings(w io.Writer, fs []hostcheck.Finding) {
	counts := map[hostcheck.Severity]int{}
	for _, f := range fs {
		counts[f.Severity]++
		label := f.Severity.String()
		if f.Severity == hostcheck.Problem {
			label = "PROBLEM"
		}
		line := fmt.Sprintf("%-9s %-14s %s", label, f.Check, f.Text)
		if f.Fix != "" {
			line += ". Fix: " + f.Fix
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "ec2net doctor: %d problems, %d notes, %d ok, %d not checked\n",
		counts[hostcheck.Problem], counts[hostcheck.Note], counts[hostcheck.OK], counts[hostcheck.Unchecked])
}
