package netconf

import (
	"errors"

	"github.com/ec2net/ec2net/netconf/internal/rtnl"
	"golang.org/x/sys/unix"
)

// Op is what a change does.
type Op int

const (
	OpAdd Op = iota // create an object
	OpDel           // delete an object
	OpSet           // change one in place (link settings, route replace)
)

func (o Op) String() string {
	switch o {
	case OpAdd:
		return "add"
	case OpDel:
		return "del"
	case OpSet:
		return "set"
	}
	return "op(?)"
}

// Sign is how plans print the op: "+" add, "-" delete, "~" set.
func (o Op) Sign() string {
	switch o {
	case OpAdd:
		return "+"
	case OpDel:
		return "-"
	}
	return "~"
}

// MarshalText makes JSON carry the name.
func (o Op) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// Kind is the kind of kernel object a change touches.
type Kind int

const (
	KindLink Kind = iota
	KindAddr
	KindRoute
	KindRule
)

func (k Kind) String() string {
	switch k {
	case KindLink:
		return "link"
	case KindAddr:
		return "addr"
	case KindRoute:
		return "route"
	case KindRule:
		return "rule"
	}
	return "kind(?)"
}

// MarshalText makes JSON carry the name.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// LinkSetting is what a link change sets: exactly one of Up, MTU,
// AltName and NoRA.
type LinkSetting struct {
	Index   int
	Up      bool
	MTU     int
	AltName string
	NoRA    bool // net.ipv6.conf.<link>.accept_ra = 0 (a sysctl, not netlink)
}

// Change is one netlink write, as plain data: its op, its object and the
// ENI it belongs to. Text prints it; execution encodes it.
type Change struct {
	Op   Op
	Kind Kind
	MAC  string // the ENI it belongs to; "" for an owned object no ENI claims
	Link string // the ENI's link name ("" when it has none)

	// The object, by Kind.
	LinkSet LinkSetting // KindLink
	Addr    rtnl.Addr   // KindAddr
	Route   rtnl.Route  // KindRoute; OpSet replaces the route
	Rule    rtnl.Rule   // KindRule
	Dev     string      // the route's or address's device name, for Text
}

// phase orders a pass's changes: deletions first (rules, routes,
// addresses), then link settings, addresses, routes and rules, so that
// every object exists before what needs it and nothing we delete is
// still needed by what we delete next.
func (c *Change) phase() int {
	if c.Kind == KindLink && c.LinkSet.NoRA {
		return -1 // before the link is up: no advertisement is ever taken
	}
	if c.Op == OpDel {
		switch c.Kind {
		case KindRule:
			return 0
		case KindRoute:
			if c.Route.Gw.IsValid() {
				return 1 // routes through a gateway first: they need the subnet route
			}
			return 2
		default:
			return 3
		}
	}
	switch c.Kind {
	case KindLink:
		return 4
	case KindAddr:
		return 5
	case KindRoute:
		return 6
	}
	return 7
}

// encode writes the change's request.
func (c *Change) encode(m *rtnl.Msg) {
	switch c.Kind {
	case KindLink:
		switch s := c.LinkSet; {
		case s.Up:
			m.EncodeLinkUp(s.Index)
		case s.MTU != 0:
			m.EncodeLinkMTU(s.Index, s.MTU)
		default:
			m.EncodeAltName(s.Index, s.AltName)
		}
	case KindAddr:
		m.EncodeAddr(rtnlOp(c.Op), c.Addr)
	case KindRoute:
		m.EncodeRoute(rtnlOp(c.Op), c.Route)
	case KindRule:
		m.EncodeRule(rtnlOp(c.Op), c.Rule)
	}
}

func rtnlOp(o Op) rtnl.Op {
	switch o {
	case OpDel:
		return rtnl.Del
	case OpSet:
		return rtnl.Replace
	}
	return rtnl.Add
}

// settle maps the kernel's answer to a change's outcome: the error that
// counts (nil: done) and whether the change created the object. Deleting
// something already gone is done; adding an address that appeared since
// the dump is satisfied but not ours.
func (c Change) settle(err error) (created bool, _ error) {
	switch {
	case err == nil:
		return c.Op == OpAdd, nil
	case c.Op == OpAdd && c.Kind == KindAddr && errors.Is(err, unix.EEXIST):
		return false, nil
	case c.Op == OpDel && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.EADDRNOTAVAIL)):
		return false, nil
	}
	return false, err
}

// String prints the change with its sign.
func (c Change) String() string { return c.Op.Sign() + " " + c.Text() }

// ChangeError is a change that failed (or could not be attempted).
type ChangeError struct {
	Change Change
	Err    error
}

func (e ChangeError) Error() string { return e.Change.String() + ": " + e.Err.Error() }

// ErrNoLink: IMDS lists the ENI but no link in the namespace has its MAC.
var ErrNoLink = errors.New("no link with this MAC in the namespace")

// ErrForeignInTheWay: a foreign route occupies the place of a desired one.
var ErrForeignInTheWay = errors.New("a foreign route is in the way")
