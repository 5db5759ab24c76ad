package main

import (
	"github.com/ec2net/ec2net/agent/converge"
	"github.com/ec2net/ec2net/netconf"
)

// The JSON that apply, plan and status print for scripts. Its shape is
// versioned by jsonVersion (documented in ec2net(8)): fields are only ever
// added within a version; lists are [] rather than null; enums are
// strings.
const jsonVersion = 1

type changeJSON struct {
	Op      string `json:"op"`   // add, del, set
	Kind    string `json:"kind"` // link, addr, route, rule
	MAC     string `json:"mac"`  // the ENI it belongs to ("" for an owned object no ENI claims)
	Link    string `json:"link"`
	Command string `json:"command"` // the change as an ip(8) command
}

type failureJSON struct {
	Change changeJSON `json:"change"`
	Error  string     `json:"error"`
}

type eniResultJSON struct {
	MAC         string        `json:"mac"`
	Link        string        `json:"link"`
	ENIID       string        `json:"eni_id"`
	Table       int           `json:"table"`
	Disposition string        `json:"disposition"` // configure, hold, exclude, orphan, unattributed
	Reason      string        `json:"reason"`
	IMDSState   string        `json:"imds_state"` // complete, pending, invalid, unknown
	Applied     []changeJSON  `json:"applied"`
	Failed      []failureJSON `json:"failed"`
}

type applyOutputJSON struct {
	Version  int             `json:"version"`
	ExitCode int             `json:"exit_code"`
	ENIs     []eniResultJSON `json:"enis"`
	Writes   int             `json:"netlink_writes"`
	Foreign  []string        `json:"foreign"`
}

type planOutputJSON struct {
	Version int             `json:"version"`
	Changes []changeJSON    `json:"changes"`
	ENIs    []eniResultJSON `json:"enis"`
	Foreign []string        `json:"foreign"`
}

func toChangeJSON(c netconf.Change) changeJSON {
	return changeJSON{Op: c.Op.String(), Kind: c.Kind.String(), MAC: c.MAC, Link: c.Link, Command: c.Text()}
}

func toENIsJSON(enis []netconf.ENIResult) []eniResultJSON {
	out := []eniResultJSON{}
	for _, e := range enis {
		j := eniResultJSON{MAC: e.MAC, Link: e.Link, ENIID: e.ENIID, Table: e.Table, Disposition: e.Disposition.String(),
			Reason: e.Reason, IMDSState: e.IMDSState.String(), Applied: []changeJSON{}, Failed: []failureJSON{}}
		for _, c := range e.Applied {
			j.Applied = append(j.Applied, toChangeJSON(c))
		}
		for _, f := range e.Failed {
			j.Failed = append(j.Failed, failureJSON{Change: toChangeJSON(f.Change), Error: f.Err.Error()})
		}
		out = append(out, j)
	}
	return out
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func applyJSON(o *converge.Outcome, code int) applyOutputJSON {
	return applyOutputJSON{Version: jsonVersion, ExitCode: code, ENIs: toENIsJSON(o.Result.ENIs), Writes: o.Result.Writes,
		Foreign: nonNil(o.Result.Foreign)}
}

func planJSON(o *converge.Outcome) planOutputJSON {
	out := planOutputJSON{Version: jsonVersion, Changes: []changeJSON{}, ENIs: toENIsJSON(o.Plan.ENIs), Foreign: nonNil(o.Plan.Foreign)}
	for _, c := range o.Plan.Changes {
		out.Changes = append(out.Changes, toChangeJSON(c))
	}
	return out
}
