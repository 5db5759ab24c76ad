package main

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ec2net/ec2net/agent/converge"
	"github.com/ec2net/ec2net/agent/daemon"
	"github.com/ec2net/ec2net/agent/hostcheck"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf"
)

// statusJSON is `ec2net status --json` (shape versioned by jsonVersion).
type statusJSON struct {
	Version   int                 `json:"version"`
	Healthy   bool                `json:"healthy"` // exit status 0: IMDS read, every ENI healthy, every address on its path
	ENIs      []netconf.ENIStatus `json:"enis"`
	Totals    map[string]int      `json:"totals"` // ENIs by state
	IMDS      imds.Stats          `json:"imds_requests"`
	IMDSError string              `json:"imds_error"` // "" when IMDS was read
	Daemon    daemonJSON          `json:"daemon"`
	Host      []hostcheck.Finding `json:"host"` // competing network managers and routes that break ENIs (problems only)
	Notes     []string            `json:"notes"`
}

func cmdStatus(ctx context.Context, c *call) int {
	asJSON := *c.opts.(*bool)
	return withEnv(c, true, true, func(e *env) int {
		snap, err := e.imds.SnapshotFull(ctx)
		imdsErr := ""
		if err != nil {
			// Still show the kernel side: an SRE runs status precisely
			// when something is wrong.
			imdsErr = e.explain(err)
			snap = nil
		}
		cfg, signs, cniErr := converge.Resolve(e.cfg, e.rec) // on error: shown as all, said in a note
		rows, err := e.rec.Status(snap, cfg)
		if err != nil {
			return e.fail(c.stderr, err)
		}
		host := hostProblems(hostLinks(rows, cfg))
		notes := statusNotes(signs, cniErr, e.rec.RecordError())
		if len(c.args) > 0 {
			if rows = selectENI(rows, c.args[0]); len(rows) == 0 {
				fmt.Fprintf(c.stderr, "ec2net: no ENI matches %q (a link name, eni-… id or MAC)\n", c.args[0])
				return exitError
			}
		}
		totals := map[string]int{}
		code := exitOK
		for _, r := range rows {
			totals[r.State.String()]++
			if !r.State.Healthy() {
				code = exitPending
			}
		}
		if imdsErr != "" {
			code = exitError
		}
		now := time.Now()
		dmn := toDaemonJSON(daemon.Live(e.rec.StateDir()), now)
		switch {
		case asJSON:
			writeJSON(c.stdout, statusJSON{Version: jsonVersion, Healthy: code == exitOK, ENIs: nonNilRows(rows), Totals: totals,
				IMDS: e.imds.Stats(), IMDSError: imdsErr, Daemon: dmn, Host: host, Notes: nonNil(notes)})
		case len(c.args) > 0:
			for _, r := range rows {
				printDetail(c.stdout, r)
			}
		default:
			printStatus(c, rows, totals, imdsErr, e.imds.Stats())
		}
		if !asJSON {
			printHost(c.stdout, dmn, host)
			for _, n := range notes {
				fmt.Fprintf(c.stdout, "note: %s\n", n)
			}
		}
		if imdsErr != "" {
			fmt.Fprintf(c.stderr, "ec2net: %s\n", imdsErr)
		}
		return code
	})
}

// statusNotes are the lines under the table: why only the primary is
// configured, why ownership cannot be shown.
func statusNotes(cniSigns []string, cniErr, recordErr error) []string {
	var notes []string
	if cniErr != nil {
		notes = append(notes, cniErr.Error()+": secondary ENIs are shown as configured")
	}
	if len(cniSigns) > 0 {
		notes = append(notes, "the Amazon VPC CNI manages this host's secondary ENIs ("+strings.Join(cniSigns, "; ")+"): only the primary ENI is configured")
	}
	if recordErr != nil {
		notes = append(notes, "ownership record not readable ("+recordErr.Error()+"): run as root to see which addresses are ec2net's")
	}
	return notes
}

func nonNilRows(r []netconf.ENIStatus) []netconf.ENIStatus {
	if r == nil {
		return []netconf.ENIStatus{}
	}
	return r
}

// selectENI keeps the rows matching a link name, ENI id or MAC.
func selectENI(rows []netconf.ENIStatus, which string) []netconf.ENIStatus {
	var out []netconf.ENIStatus
	for _, r := range rows {
		if r.Link == which || r.ENIID == which || strings.EqualFold(r.MAC, which) {
			out = append(out, r)
		}
	}
	return out
}

func printStatus(c *call, rows []netconf.ENIStatus, totals map[string]int, imdsErr string, st imds.Stats) {
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
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
			orDash(r.Link, "-"), r.MAC, orDash(r.ENIID, "-"), r.Card, r.Device, table,
			addrColumn(r), r.RulesPresent, r.RulesWanted, state)
	}
	tw.Flush()
	var parts []string
	keys := make([]string, 0, len(totals))
	for k := range totals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", totals[k], k))
	}
	switch {
	case len(rows) == 0 && imdsErr != "":
		fmt.Fprintln(c.stdout, "No ENI configured by ec2net in this namespace; IMDS not read, so nothing more to show.")
	case imdsErr != "":
		fmt.Fprintf(c.stdout, "%d ENIs (%s); IMDS not read: the kernel side only.\n", len(rows), strings.Join(parts, ", "))
	default:
		failed := st.Requests - st.OK - st.NotFound
		fmt.Fprintf(c.stdout, "%d ENIs (%s); IMDS read with %d requests (%d failed)\n", len(rows), strings.Join(parts, ", "), st.Requests, failed)
	}
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
