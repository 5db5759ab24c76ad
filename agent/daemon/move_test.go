package daemon

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// An ENI moved from one instance to another (each running its own
// daemon) is answered by the new instance on every address; the old one
// is left with no link, address, rule or route of it, and stays so while
// its IMDS still lists the ENI and refreshes come and go; the new
// instance's other ENIs keep exactly their configuration and traffic.
// Then the same back.
func TestMoveLeavesTheOldInstanceClean(t *testing.T) {
	m := newMoveBed(t, "dmmove", func(c *config.Config) {
		c.RefreshInterval = time.Second
		c.RemoveAfterTime = time.Second
	})
	from, to := m.a, m.b
	for range 2 {
		before := m.otherState(to)
		to.IMDS.SetPropagation(time.Second)
		must(t, m.vpc.Move(m.floating.MAC, to, vpcsim.MoveOptions{IMDSLag: 8 * time.Second}))
		eventually(t, 15*time.Second, "every address of the moved ENI answered by "+to.Name, m.answeredBy(to))
		eventually(t, 5*time.Second, from.Name+" clean", func() error {
			if left := m.leftovers(from); len(left) > 0 {
				return fmt.Errorf("%s still has %v", from, left)
			}
			return nil
		})
		// The old instance's IMDS lists the ENI for 8 s after the move;
		// refreshes run every second: nothing may come back meanwhile.
		until := time.Now().Add(4 * time.Second)
		for time.Now().Before(until) {
			if left := m.leftovers(from); len(left) > 0 {
				t.Fatalf("%s got back %v after being clean", from, left)
			}
			time.Sleep(100 * time.Millisecond) // the check's cadence
		}
		if _, listed := from.IMDS.ENI(m.floating.MAC); !listed {
			t.Errorf("%s's IMDS no longer lists the moved ENI: the window checked was not the one where it is listed but gone", from)
		}
		if after := m.otherState(to); !slices.Equal(before, after) {
			t.Errorf("%s's other configuration changed:\nbefore %v\nafter  %v", to, before, after)
		}
		others := []vpcsim.ENISpec{}
		for _, e := range to.ENIs() {
			if e.MAC != m.floating.MAC {
				others = append(others, e)
			}
		}
		for _, e := range others {
			if err := m.passes(to, allAddrs(e))(); err != nil {
				t.Errorf("%s's %s after the move: %v", to, e.Name, err)
			}
		}
		from, to = to, from
	}
}

// otherState is everything of inst's configuration that is not the
// floating ENI's: addresses of its other links, owned rules and routes
// of other tables, sorted.
func (m *moveBed) otherState(inst *vpcsim.Instance) []string {
	h := m.harnessOf(inst)
	var out []string
	links, err := h.nl.LinkList()
	must(h.t, err)
	for _, l := range links {
		if l.Attrs().HardwareAddr.String() == m.floating.MAC {
			continue
		}
		addrs, err := h.nl.AddrList(l, unix.AF_UNSPEC)
		must(h.t, err)
		for _, a := range addrs {
			if a.Scope == unix.RT_SCOPE_LINK {
				continue // IPv6 link-local: the kernel's
			}
			out = append(out, l.Attrs().Name+" "+addrString(a))
		}
	}
	for _, r := range append(h.ownedRules(), h.ownedRoutes()...) {
		if tableRules([]string{r}, floatTable) == 0 && !strings.HasPrefix(r, fmt.Sprintf("table %d ", floatTable)) {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

func addrString(a netlink.Addr) string {
	return fmt.Sprintf("%s flags %#x", a.IPNet, a.Flags)
}
