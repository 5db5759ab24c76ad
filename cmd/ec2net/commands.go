package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/ec2net/ec2net/agent/daemon"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf"
)

// apply: one full reconcile of every attached ENI.
func (e *env) apply(ctx context.Context, stdout, stderr io.Writer) int {
	snap, err := e.imds.SnapshotSettled(ctx, e.cfg.ApplyWait)
	if err != nil {
		fmt.Fprintf(stderr, "ec2net: %s\n", explain(err, e.cfg))
		return exitError
	}
	snap, err = daemon.ConfirmRemovals(ctx, e.imds, e.rec, e.cfg, snap, nil)
	if err != nil {
		fmt.Fprintf(stderr, "ec2net: %s\n", explain(err, e.cfg))
		return exitError
	}
	res, err := e.rec.Apply(snap, e.cfg)
	if err != nil {
		fmt.Fprintf(stderr, "ec2net: %s\n", explain(err, e.cfg))
		return exitError
	}
	code := exitOK
	changes := 0
	for _, r := range res.ENIs {
		changes += len(r.Applied)
		for _, c := range r.Applied {
			fmt.Fprintf(stdout, "%s %s\n", c.Op.Sign(), c.Text())
		}
		for _, f := range r.Failed {
			fmt.Fprintf(stderr, "ec2net: %s %s: %s failed: %v\n", nameOr(r.Link, r.MAC), r.ENIID, f.Change.Text(), f.Err)
			code = exitError
		}
	}
	for _, eni := range snap.ENIs {
		if eni.State == imds.Complete || e.cfg.Excluded(eni.MAC, eni.InterfaceID, eni.DeviceNumber) {
			continue
		}
		fmt.Fprintf(stderr, "ec2net: ENI %s %s is %s: %s\n", eni.MAC, orDash(eni.InterfaceID), eni.State, eni.Reason)
		if code == exitOK {
			code = exitPending
		}
	}
	for _, f := range res.Foreign {
		fmt.Fprintf(stdout, "note: left alone (not ec2net's): %s\n", f)
	}
	fmt.Fprintf(stdout, "ec2net apply: %d ENIs, %d changes, %d netlink writes\n", len(snap.ENIs), changes, res.Writes)
	return code
}

// plan: what apply would change, without changing it.
func (e *env) plan(ctx context.Context, stdout, stderr io.Writer) int {
	snap, err := e.imds.Snapshot(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "ec2net: %s\n", explain(err, e.cfg))
		return exitError
	}
	p, err := e.rec.Plan(snap, e.cfg)
	if err != nil {
		fmt.Fprintf(stderr, "ec2net: %s\n", explain(err, e.cfg))
		return exitError
	}
	fmt.Fprint(stdout, p.String())
	if s := p.String(); s != "" && !strings.HasSuffix(s, "\n") {
		fmt.Fprintln(stdout)
	}
	code := exitOK
	for _, eni := range snap.ENIs {
		if eni.State != imds.Complete && !e.cfg.Excluded(eni.MAC, eni.InterfaceID, eni.DeviceNumber) {
			fmt.Fprintf(stdout, "# %s %s is %s (left as it is): %s\n", eni.MAC, orDash(eni.InterfaceID), eni.State, eni.Reason)
			code = exitPending
		}
	}
	return code
}

// statusReport is the JSON form of `ec2net status --json`.
type statusReport struct {
	ENIs   []netconf.ENIStatus `json:"enis"`
	Totals map[string]int      `json:"totals"`
	IMDS   imds.Stats          `json:"imds_requests"`
	Error  string              `json:"imds_error,omitempty"`
}

func (e *env) status(ctx context.Context, stdout, stderr io.Writer, asJSON bool) int {
	snap, err := e.imds.SnapshotFull(ctx)
	imdsErr := ""
	if err != nil {
		// Still show the kernel side: an SRE runs status precisely when
		// something is wrong.
		imdsErr = explain(err, e.cfg)
		snap = nil
	}
	rows, err := e.rec.Status(snap, e.cfg)
	if err != nil {
		fmt.Fprintf(stderr, "ec2net: %s\n", explain(err, e.cfg))
		return exitError
	}
	totals := map[string]int{}
	for _, r := range rows {
		totals[r.State.String()]++
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(statusReport{ENIs: rows, Totals: totals, IMDS: e.imds.Stats(), Error: imdsErr})
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "LINK\tMAC\tENI\tCARD/DEV\tTABLE\tADDRS ON LINK/IMDS\tRULES\tSTATE")
		for _, r := range rows {
			table := "-"
			if r.Table != 0 {
				table = fmt.Sprint(r.Table)
			}
			if r.Primary {
				table = "main"
			}
			state := r.State.String()
			if r.Reason != "" {
				state += " (" + r.Reason + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%d/%d\t%s\n",
				nameOr(r.Link, "-"), r.MAC, orDash(r.ENIID), r.Card, r.Device, table,
				addrColumn(r), r.RulesPresent, r.RulesWanted, state)
		}
		tw.Flush()
		var parts []string
		for _, k := range sortedKeys(totals) {
			parts = append(parts, fmt.Sprintf("%d %s", totals[k], k))
		}
		fmt.Fprintf(stdout, "%d ENIs: %s; IMDS requests: %s\n", len(rows), strings.Join(parts, ", "), e.imds.Stats())
	}
	if imdsErr != "" {
		fmt.Fprintf(stderr, "ec2net: %s\n", imdsErr)
		return exitError
	}
	for _, r := range rows {
		if !r.State.Healthy() {
			return exitPending
		}
	}
	return exitOK
}

func (e *env) cleanup(stdout, stderr io.Writer) int {
	if pid := daemon.Running(e.rec.StateDir()); pid != 0 {
		fmt.Fprintf(stderr, "ec2net: note: ec2net run (pid %d) manages this namespace and will restore what cleanup removes; stop it first (systemctl stop ec2net)\n", pid)
	}
	res, err := e.rec.Cleanup()
	if err != nil {
		fmt.Fprintf(stderr, "ec2net: %s\n", explain(err, e.cfg))
		return exitError
	}
	code := exitOK
	n := 0
	for _, r := range res.ENIs {
		for _, c := range r.Applied {
			fmt.Fprintf(stdout, "%s %s\n", c.Op.Sign(), c.Text())
			n++
		}
		for _, f := range r.Failed {
			fmt.Fprintf(stderr, "ec2net: %s failed: %v\n", f.Change.Text(), f.Err)
			code = exitError
		}
	}
	fmt.Fprintf(stdout, "ec2net cleanup: removed %d objects, %d netlink writes\n", n, res.Writes)
	return code
}

func addrColumn(r netconf.ENIStatus) string {
	if r.State == netconf.StateUnknown && len(r.IMDSAddrs) == 0 {
		return fmt.Sprintf("%d on link", len(r.LinkAddrs))
	}
	return addrCoverage(r.IMDSAddrs, r.LinkAddrs)
}

// addrCoverage is "on link/in IMDS", naming the IMDS addresses missing
// from the link: the column an SRE reads first.
func addrCoverage(imdsAddrs, linkAddrs []netip.Addr) string {
	on := map[netip.Addr]bool{}
	for _, a := range linkAddrs {
		on[a] = true
	}
	var missing []string
	for _, a := range imdsAddrs {
		if !on[a] {
			missing = append(missing, a.String())
		}
	}
	s := fmt.Sprintf("%d/%d", len(imdsAddrs)-len(missing), len(imdsAddrs))
	if len(missing) > 0 {
		s += " missing " + strings.Join(missing, ",")
	}
	return s
}

func nameOr(name, alt string) string {
	if name == "" {
		return alt
	}
	return name
}

func orDash(s string) string { return nameOr(s, "-") }

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
