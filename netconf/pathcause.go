package netconf

import (
	"errors"
	"strconv"
	"strings"

	"github.com/ec2net/ec2net/netconf/internal/rtnl"
	"github.com/ec2net/ec2net/netconf/plan"
	"golang.org/x/sys/unix"
)

// What a failed lookup means, in words an SRE acts on: the rule that
// wins (the kernel names the table it used, never the rule, so the rule
// is found by walking the rules as fib_rule_match does), the route that
// matched (a fibmatch lookup), the reverse-path filter, a missing route.

func itoa(n int) string { return strconv.Itoa(n) }

// pathText describes probe k's answer: "via 100.64.2.1 dev eth1 table
// 10001", or the kernel's error.
func (v *verifier) pathText(k int) string {
	if err := v.errs[k]; err != nil {
		return "no route: " + errText(err)
	}
	return v.answerText(&v.answers[k])
}

func (v *verifier) answerText(a *rtnl.RouteAnswer) string {
	var b strings.Builder
	if a.Type != unix.RTN_UNICAST {
		b.WriteString(routeTypeName(a.Type))
		b.WriteByte(' ')
	}
	if a.Gw.IsValid() {
		b.WriteString("via " + a.Gw.String() + " ")
	}
	if dev := v.p.have.devName(a.OIF); dev != "" {
		b.WriteString("dev " + dev + " ")
	}
	b.WriteString("table " + tableName(a.Table))
	return b.String()
}

func routeTypeName(t int) string {
	switch t {
	case unix.RTN_UNICAST:
		return "unicast"
	case unix.RTN_LOCAL:
		return "local"
	case unix.RTN_BLACKHOLE:
		return "blackhole"
	case unix.RTN_UNREACHABLE:
		return "unreachable"
	case unix.RTN_PROHIBIT:
		return "prohibit"
	case unix.RTN_THROW:
		return "throw"
	}
	return "type " + itoa(t)
}

func errText(err error) string {
	var ke *rtnl.KernelError
	if errors.As(err, &ke) {
		return ke.Errno.Error()
	}
	return err.Error()
}

// cause decides an address's state from its answers.
func (v *verifier) cause(s *subject, fib map[int]fibAnswer) (State, string) {
	var in, out = -1, -1
	for _, k := range s.probes {
		if v.ok(k) {
			continue
		}
		if v.probes[k].kind == probeIn {
			in = k
		} else if out < 0 {
			out = k
		}
	}
	if in < 0 && out < 0 {
		return StateConfigured, ""
	}
	st, why := StateConfigured, ""
	if out >= 0 {
		st, why = v.outCause(s, out, fib[out])
	}
	if in >= 0 {
		st, why = v.inCause(s, in, why)
	}
	if st != StateShadowed && v.pendingFor(s) {
		// ec2net's own objects are missing: apply (the daemon's repair)
		// restores them; that is drift, not a path someone else broke.
		return StateDrift, why + "; apply restores what is missing"
	}
	return st, why
}

// outCause explains a failed lookup out of the address.
func (v *verifier) outCause(s *subject, k int, fa fibAnswer) (State, string) {
	pr, a, err := &v.probes[k], &v.answers[k], v.errs[k]
	flow := "from " + pr.q.Src.String() + " to " + pr.q.Dst.String()
	goes := flow + " goes " + v.answerText(a)
	if err != nil {
		goes = flow + " has no route (" + errText(err) + ")"
	}
	if w := v.winner(s, k, fa); shadows(s.eni, w) {
		return StateShadowed, "foreign rule \"" + ruleText("", w.Rule) + ruleAction(w) + "\" wins over " + v.expected(s) +
			": " + goes + "; delete it or give it a priority after " + v.afterPrio(s)
	}
	if v.ruleList(); v.rulesErr != nil {
		// Without the rules neither the winner nor a missing rule of
		// ec2net's can be named.
		return StateWrongPath, goes + " (the rules could not be read to say why: " + errText(v.rulesErr) + ")"
	}
	if err != nil {
		return StateWrongPath, flow + " has no route (" + errText(err) + ")"
	}
	route := "a route"
	if fa.err == nil {
		route = "route \"" + routeText("", rtnl.Route{Family: fa.a.Family, Table: fa.a.Table, Type: fa.a.Type, Scope: fa.a.Scope,
			Proto: fa.a.Proto, Metric: fa.a.Metric, OIF: fa.a.OIF, Dst: fa.a.Dst, Gw: fa.a.Gw}, v.p.have.devName(fa.a.OIF)) + "\""
	}
	switch {
	case s.eni.Primary:
		return StateWrongPath, route + " wins: " + goes + ", not out through " + s.link.Name
	case a.Table != s.eni.Table && !v.hasOwnRule(s):
		return StateWrongPath, "ec2net's rule for it is missing, so " + route + " wins: " + goes
	case a.Table != s.eni.Table:
		return StateWrongPath, "table " + itoa(s.eni.Table) + " has no route for it, so the lookup falls through to " + route + ": " + goes
	}
	return StateWrongPath, route + " wins in table " + itoa(a.Table) + ": " + goes + ", not out through " + s.link.Name +
		"; delete it (ec2net restores its own)"
}

// hasOwnRule reports whether ec2net's rule for the address is in the
// kernel.
func (v *verifier) hasOwnRule(s *subject) bool {
	for _, rm := range v.ruleList() {
		if rm.Proto == Protocol && rm.Table == s.eni.Table && rm.Src.Contains(s.st.Address) {
			return true
		}
	}
	return false
}

func (v *verifier) afterPrio(s *subject) string {
	if s.eni.Primary {
		return "the main table's (32766), or make it send the primary's addresses to main"
	}
	return itoa(s.eni.Table)
}

// shadows reports whether the rule a lookup went through is not the one
// the address needs: for a secondary ENI's address any rule but ec2net's
// own at a priority up to its table's; for the primary's, a rule that
// sends it to a table other than main or ends the lookup.
func shadows(e *plan.ENI, w *rtnl.RuleMatch) bool {
	switch {
	case w == nil:
		return false
	case e.Primary:
		return w.Action != unix.FR_ACT_TO_TBL || w.Table != unix.RT_TABLE_MAIN
	case w.Action == unix.FR_ACT_TO_TBL && w.Table == e.Table && w.Priority == e.Table:
		return false // ec2net's own rule: the route in its table is at fault
	}
	return w.Priority <= e.Table
}

// expected says where the address's packets should go.
func (v *verifier) expected(s *subject) string {
	if s.eni.Primary {
		return "the main table (out through " + s.link.Name + ")"
	}
	return "ec2net's rule (pref " + itoa(s.eni.Table) + ", out through " + s.link.Name + ")"
}

func ruleAction(r *rtnl.RuleMatch) string {
	switch r.Action {
	case unix.FR_ACT_BLACKHOLE:
		return " blackhole"
	case unix.FR_ACT_UNREACHABLE:
		return " unreachable"
	case unix.FR_ACT_PROHIBIT:
		return " prohibit"
	}
	return ""
}

// inCause explains a packet for the address refused on arrival.
func (v *verifier) inCause(s *subject, k int, outWhy string) (State, string) {
	err, a := v.errs[k], &v.answers[k]
	addr, link := v.probes[k].q.Dst.String(), s.link.Name
	back := "the reply to " + v.probes[k].q.Src.String() + " would leave through " + v.pathText(s.probes[0])
	if outWhy != "" {
		back = outWhy
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EXDEV) {
		return StateRPFilter, "strict rp_filter (net.ipv4.conf." + link + " or all) drops packets for " + addr +
			" arriving on " + link + " because their replies would leave elsewhere: " + back + " (fix that, or set net.ipv4.conf." + link + ".rp_filter=2)"
	}
	if err != nil {
		return StateWrongPath, "packets for " + addr + " arriving on " + link + " are refused (" + errText(err) + ")"
	}
	return StateWrongPath, "packets for " + addr + " arriving on " + link + " are not delivered here (" + routeTypeName(a.Type) + ")"
}

// pendingFor reports whether the pass has ec2net's own objects to add
// for this address: its rule, a route of its table, the address itself.
func (v *verifier) pendingFor(s *subject) bool {
	a := s.st.Address
	for i := range v.p.changes {
		c := &v.p.changes[i]
		if c.MAC != s.eni.MAC || c.Op == OpDel {
			continue
		}
		switch c.Kind {
		case KindRule:
			if c.Rule.Src.Contains(a) {
				return true
			}
		case KindRoute:
			if c.Route.Table == s.eni.Table && c.Route.Dst.Addr().Is4() == a.Is4() {
				return true
			}
		case KindAddr:
			if c.Addr.Prefix.Addr() == a {
				return true
			}
		case KindLink:
			if c.LinkSet.Up {
				return true
			}
		}
	}
	return false
}

// winner finds the rule a lookup went through: the first rule, in the
// kernel's order, that selects the packet and either looks up the table
// the answer came from (unless a suppressor discards the matched route)
// or ends the lookup (blackhole, unreachable, prohibit).
func (v *verifier) winner(s *subject, k int, fa fibAnswer) *rtnl.RuleMatch {
	pr, a, err := &v.probes[k], &v.answers[k], v.errs[k]
	rules := v.ruleList()
	f := rtnl.Flow{Src: pr.q.Src, Dst: pr.q.Dst, IIF: "lo", UID: processUID}
	bits := -1
	if fa.err == nil {
		bits = fa.a.Dst.Bits()
	}
	gotoPrio := -1
	for i := range rules {
		rm := &rules[i]
		if rm.Family != family(pr.q.Dst) || rm.Priority < gotoPrio || !rm.Matches(f) {
			continue
		}
		switch rm.Action {
		case unix.FR_ACT_TO_TBL:
			if err == nil && rm.Table == a.Table && (rm.Suppress < 0 || bits > rm.Suppress) {
				return rm
			}
		case unix.FR_ACT_GOTO:
			gotoPrio = rm.Goto
		case unix.FR_ACT_BLACKHOLE, unix.FR_ACT_UNREACHABLE, unix.FR_ACT_PROHIBIT:
			return rm
		}
	}
	return nil
}
