package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/daemon"
	"github.com/ec2net/ec2net/agent/hostcheck"
	"github.com/ec2net/ec2net/netconf"
)

// daemonJSON is the daemon's liveness in status --json: times RFC 3339,
// "" when unknown or never.
type daemonJSON struct {
	Known           bool   `json:"known"` // false: its state could not be read (not root)
	Running         bool   `json:"running"`
	PID             int    `json:"pid"` // 0 when not running
	Started         string `json:"started"`
	LastIMDSRead    string `json:"last_imds_read"`
	LastIMDSError   string `json:"last_imds_error"`
	LastReconcile   string `json:"last_reconcile"`
	RepairsLastHour int    `json:"repairs_last_hour"`
	Summary         string `json:"summary"` // the line status prints
}

func toDaemonJSON(lv daemon.Liveness, now time.Time) daemonJSON {
	d := daemonJSON{Known: lv.Err == nil, Running: lv.PID != 0, PID: max(lv.PID, 0), Summary: lv.Summary(now)}
	if rt := lv.Runtime; rt != nil && lv.PID != 0 && rt.PID == lv.PID {
		d.Started, d.LastIMDSRead, d.LastReconcile = stamp(rt.Started), stamp(rt.LastRead), stamp(rt.LastReconcile)
		d.LastIMDSError = rt.LastReadError
		d.RepairsLastHour = rt.RepairsSince(now.Add(-time.Hour))
	}
	return d
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// hostLinks are the ENIs' links as hostcheck sees them, from the status.
// EC2NET_TEST_HOST_ROOT (tests only) points the file checks at another
// root, so that the test machine's own network manager is not reported.
func hostLinks(rows []netconf.ENIStatus, cfg config.Config) hostcheck.Host {
	h := hostcheck.For(rows, cfg.MTU == config.MTUKeep, cfg.SecondaryENIs == config.SecondaryNone)
	_ = hostcheck.Collect(&h) // what cannot be read stays unknown
	return h
}

// hostProblems are the competing managers and main-table defaults status
// warns about (doctor says how to fix each).
func hostProblems(h hostcheck.Host) []hostcheck.Finding {
	out := []hostcheck.Finding{}
	for _, f := range hostcheck.All(h) {
		if f.Severity == hostcheck.Problem {
			out = append(out, f)
		}
	}
	return out
}

// printDetail shows one ENI in full: every address with the path the
// kernel's lookup takes and, when it is off its path, why.
func printDetail(w io.Writer, r netconf.ENIStatus) {
	fmt.Fprintf(w, "%s  %s  %s\n", orDash(r.Link, "(no link)"), orDash(r.ENIID, "-"), r.MAC)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	state := r.State.String()
	if r.Reason != "" {
		state += ": " + r.Reason
	}
	fmt.Fprintf(tw, "  state\t%s\n", state)
	fmt.Fprintf(tw, "  imds\t%s; network card %d, device %d\n", orDash(r.IMDSState, "not listed"), r.Card, r.Device)
	switch {
	case r.Primary:
		fmt.Fprintf(tw, "  table\tmain (the primary ENI: no rules)\n")
	case r.Table != 0:
		fmt.Fprintf(tw, "  table\t%d (rules %d of %d present)\n", r.Table, r.RulesPresent, r.RulesWanted)
	}
	if r.Link != "" {
		fmt.Fprintf(tw, "  link\t%s, MTU %d, altnames %s\n", r.Link, r.MTU, orDash(strings.Join(r.AltNames, ", "), "none"))
	}
	fmt.Fprintf(tw, "  pending\t%d changes (ec2net plan shows them)\n", r.PendingChanges)
	tw.Flush()
	if len(r.Addrs) > 0 {
		fmt.Fprintln(w, "  addresses (the kernel's route lookup from each):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, a := range r.Addrs {
			fmt.Fprintf(tw, "    %s\t%s\t%s\n", a.Subject(), a.State, orDash(a.Path, "-"))
			if a.Cause != "" {
				fmt.Fprintf(tw, "    \t\t%s\n", a.Cause)
			}
		}
		tw.Flush()
	}
	if extra := notInIMDS(r); len(extra) > 0 {
		fmt.Fprintf(w, "  on the link, not in IMDS: %s\n", strings.Join(extra, ", "))
	}
}

func notInIMDS(r netconf.ENIStatus) []string {
	in := map[netip.Addr]bool{}
	for _, a := range r.IMDSAddrs {
		in[a] = true
	}
	var out []string
	for _, a := range r.LinkAddrs {
		if !in[a] {
			out = append(out, a.String())
		}
	}
	return out
}

// printHost prints the daemon line and the host's problems under the
// status.
func printHost(w io.Writer, d daemonJSON, host []hostcheck.Finding) {
	fmt.Fprintln(w, d.Summary)
	for _, f := range host {
		fmt.Fprintf(w, "warning: %s (ec2net doctor says what to do)\n", f.Text)
	}
}
