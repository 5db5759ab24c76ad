package vpcsim

import (
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// diag dumps links, addresses, neighbours, routes and rules of every
// namespace (with `ip` where it is installed) and the router's check, for
// failure messages.
func diag(v *VPC) string {
	var b strings.Builder
	if _, err := exec.LookPath("ip"); err == nil {
		for _, ns := range v.Namespaces() {
			for _, c := range [][]string{{"ip", "-s", "-d", "link"}, {"ip", "addr"}, {"ip", "neigh"}, {"ip", "route"}, {"ip", "-6", "route"}, {"ip", "rule"}} {
				out, err := v.Exec(ns, c...)
				fmt.Fprintf(&b, "== %s %v (%v)\n%s", ns, c, err, out)
			}
		}
	} else {
		b.WriteString("(iproute2 is not installed: no ip dumps)\n")
	}
	out, err := dumpCheck(v)
	fmt.Fprintf(&b, "== router check (%v)\n%s", err, out)
	return b.String()
}

// dumpCheck lists the router's nftables objects: chains, sets and the
// elements of the port maps and address sets, one per line.
func dumpCheck(v *VPC) (string, error) {
	h, err := v.Handle(v.Router)
	if err != nil {
		return "", err
	}
	c, err := nftConn(h)
	if err != nil {
		return "", err
	}
	var lines []string
	chains, err := c.ListChainsOfTableFamily(checkTable.Family)
	if err != nil {
		return "", err
	}
	for _, ch := range chains {
		if ch.Table.Name == nftTable {
			lines = append(lines, "chain "+ch.Name)
		}
	}
	sets, err := c.GetSets(checkTable)
	if err != nil {
		return "", err
	}
	for _, s := range sets {
		lines = append(lines, "set "+s.Name)
		els, err := c.GetSetElements(s)
		if err != nil {
			return "", err
		}
		for _, e := range els {
			key := strings.TrimRight(string(e.Key), "\x00")
			if a, ok := netip.AddrFromSlice(e.Key); ok && !s.IsMap && !s.Concatenation {
				key = a.String()
			} else if r, ok := decodeDropKey(e.Key); ok {
				key = r.port + " . " + r.addr
			}
			if e.VerdictData != nil {
				key += " : " + e.VerdictData.Chain
			}
			if e.IntervalEnd {
				key = "end " + key
			}
			lines = append(lines, "  "+s.Name+" "+key)
		}
	}
	return strings.Join(lines, "\n") + "\n", nil
}

// checkObjects is dumpCheck or fails the test.
func checkObjects(t *testing.T, v *VPC) string {
	t.Helper()
	out, err := dumpCheck(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// permanentNeighbours lists the router's permanent neighbour entries
// ("ADDR lladdr MAC"), as `ip neigh show nud permanent` does.
func permanentNeighbours(t *testing.T, v *VPC) string {
	t.Helper()
	v.mu.Lock()
	nl := v.router
	v.mu.Unlock()
	var lines []string
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		ns, err := nl.NeighList(0, fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if n.State&netlink.NUD_PERMANENT != 0 {
				lines = append(lines, fmt.Sprintf("%s lladdr %s", n.IP, n.HardwareAddr))
			}
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
