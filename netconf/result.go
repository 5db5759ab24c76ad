package netconf

import (
	"errors"
	"strings"

	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf/plan"
)

// ENIResult is what a pass did (or, in a Plan, would do) for one ENI.
type ENIResult struct {
	MAC, Link, ENIID string
	Table            int
	Disposition      plan.Disposition
	Reason           string        // why held or excluded
	IMDSState        imds.ENIState // the snapshot's state (Complete for orphans)
	AdminDown        bool          // its link was set down after ec2net brought it up: left down
	Applied          []Change
	Failed           []ChangeError
}

// Result is the outcome of Apply or Cleanup.
type Result struct {
	ENIs    []ENIResult
	Writes  int      // netlink write requests made
	Foreign []string // foreign objects in or near ec2net's ranges, one line each
}

// Failed returns every failed change of every ENI.
func (r *Result) Failed() []ChangeError {
	var out []ChangeError
	for _, e := range r.ENIs {
		out = append(out, e.Failed...)
	}
	return out
}

// Plan is what Apply would do: the changes in execution order and, per
// ENI, its disposition and the changes that cannot be made.
type Plan struct {
	Changes []Change
	ENIs    []ENIResult // Applied is empty; Failed holds what cannot be done
	Foreign []string
}

func (p *pass) outcome() *Result {
	out := &Result{Foreign: p.foreign}
	for _, mac := range p.order {
		out.ENIs = append(out.ENIs, *p.results[mac])
	}
	return out
}

func (p *pass) plan() *Plan {
	return &Plan{Changes: p.changes, ENIs: p.outcome().ENIs, Foreign: p.foreign}
}

// Note is the one line a plan prints about an ENI that is not simply
// configured: held, excluded or without a link; "" for the others.
func (e *ENIResult) Note() string {
	id := e.ENIID
	if id == "" {
		id = "-"
	}
	switch e.Disposition {
	case plan.Hold:
		return e.MAC + " " + id + ": held (" + e.Reason + "): nothing added or removed"
	case plan.Exclude:
		return e.MAC + " " + id + ": " + e.Reason + ": only removing what ec2net added"
	}
	for _, f := range e.Failed {
		if f.Err == ErrNoLink {
			return e.MAC + " " + id + ": no link with this MAC"
		}
	}
	return ""
}

// String prints the changes one per line, then notes and foreign objects
// as "#" comments; "(no changes)" when there is nothing to do.
func (p *Plan) String() string {
	var b strings.Builder
	if len(p.Changes) == 0 {
		b.WriteString("(no changes)\n")
	}
	for _, c := range p.Changes {
		b.WriteString(c.String())
		b.WriteByte('\n')
	}
	for i := range p.ENIs {
		e := &p.ENIs[i]
		if n := e.Note(); n != "" {
			b.WriteString("# " + n + "\n")
		}
		for _, f := range e.Failed {
			switch {
			case errors.Is(f.Err, ErrNoLink):
			case errors.Is(f.Err, ErrForeignInTheWay):
				// The route itself is listed with the foreign objects.
				b.WriteString("# cannot " + f.Change.Text() + ": a foreign route holds its place (below)\n")
			default:
				b.WriteString("# cannot " + f.Change.Text() + ": " + f.Err.Error() + "\n")
			}
		}
	}
	for _, f := range p.Foreign {
		b.WriteString("# foreign, left alone: " + f + "\n")
	}
	return b.String()
}
