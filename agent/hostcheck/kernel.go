package hostcheck

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ec2net/ec2net/netconf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Kernel runs the checks of kernel settings: rp_filter and MTU per ENI
// link, and default routes in main through a secondary ENI.
func Kernel(h Host) []Finding {
	var out []Finding
	out = append(out, rpFilter(&h)...)
	out = append(out, mtu(&h)...)
	out = append(out, mainDefaults(&h)...)
	return out
}

// rpFilter reads the effective reverse-path filter of each ENI link: the
// kernel uses the larger of conf.all and conf.<link>.
func rpFilter(h *Host) []Finding {
	all, ok := h.sysctl("net/ipv4/conf/all/rp_filter")
	if !ok {
		return []Finding{{Severity: Unchecked, Check: "rp_filter", Text: "cannot read net.ipv4.conf.all.rp_filter"}}
	}
	var out []Finding
	for _, l := range h.ENIs {
		v, ok := h.sysctl("net/ipv4/conf/" + l.Name + "/rp_filter")
		if !ok {
			continue
		}
		eff := max(v, all)
		f := Finding{Severity: OK, Check: "rp_filter", Link: l.Name}
		switch eff {
		case 1:
			f.Severity = Note
			f.Text = "rp_filter is strict on " + l.Name + ": a packet for one of its addresses is dropped on arrival whenever " +
				"its reply would leave through another link (ec2net's rules keep replies on " + l.Name + "; status checks it)"
			f.Fix = "none while every address is on its path; set net.ipv4.conf." + l.Name + ".rp_filter=2 (loose) if something reroutes replies on purpose"
		case 2:
			f.Text = "rp_filter is loose on " + l.Name
		default:
			f.Text = "rp_filter is off on " + l.Name
		}
		out = append(out, f)
	}
	return out
}

func (h *Host) sysctl(key string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(h.SysRoot, "/proc/sys", key))
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return n, err == nil
}

// ENA and ixgbevf carry 9001-byte frames inside the VPC; the VPC's DHCP
// sets that MTU on the primary, ec2net (mtu = auto) on the others.
func mtu(h *Host) []Finding {
	var out []Finding
	for _, l := range h.ENIs {
		if l.Driver != "ena" && l.Driver != "ixgbevf" || l.MTU >= 9001 || l.MTU == 0 {
			continue
		}
		f := Finding{Severity: Note, Check: "mtu", Link: l.Name,
			Text: l.Name + " (" + l.Driver + ") has MTU " + strconv.Itoa(l.MTU) + "; the VPC carries 9001 between instances"}
		switch {
		case l.Primary:
			f.Fix = "the primary's MTU is the DHCP client's business (the VPC's DHCP offers 9001): check its configuration"
		case h.MTUKeep:
			f.Fix = "mtu = keep leaves it alone; mtu = auto (the default) sets 9001"
		default:
			f.Fix = "ec2net (mtu = auto) sets 9001 at the next reconcile; if it stays, something else resets it"
		}
		out = append(out, f)
	}
	return out
}

// mainDefaults flags a default route in main through a secondary ENI at
// a metric no higher than the primary's: the primary's own traffic may
// then leave through that ENI, where the VPC's source/destination check
// drops it.
func mainDefaults(h *Host) []Finding {
	p := h.primary()
	if p == nil {
		return nil
	}
	secondary := map[string]bool{}
	for _, l := range h.secondaries() {
		secondary[l.Name] = true
	}
	var out []Finding
	for _, fam := range []int{4, 6} {
		best := -1
		for _, d := range h.MainDefaults {
			if d.Family == fam && d.Link == p.Name && (best < 0 || d.Metric < best) {
				best = d.Metric
			}
		}
		for _, d := range h.MainDefaults {
			if d.Family != fam || !secondary[d.Link] || (best >= 0 && d.Metric > best) {
				continue
			}
			f := Finding{Severity: Problem, Check: "main-default", Link: d.Link,
				Text: "main has an IPv" + strconv.Itoa(fam) + " default route through " + d.Link + " (proto " + d.Proto + ", metric " + strconv.Itoa(d.Metric) +
					") at or below " + p.Name + "'s: the primary's own traffic can leave through " + d.Link + ", where the VPC drops it"}
			switch d.Proto {
			case "ra":
				f.Fix = "the kernel learned it from router advertisements: sysctl net.ipv6.conf." + d.Link + ".accept_ra=0"
			case "dhcp":
				f.Fix = "a DHCP client or network manager runs on " + d.Link + ": stop it managing secondary ENIs (see the other findings)"
			default:
				f.Fix = "delete it (ip route del default dev " + d.Link + ") and find what added it"
			}
			out = append(out, f)
		}
	}
	return out
}

// Collect fills the kernel side of a Host from the current network
// namespace: link indexes, drivers and MTUs of the ENIs, every link's
// name, and the main table's default routes.
func Collect(h *Host) error {
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, i := range ifs {
		h.LinkNames = append(h.LinkNames, i.Name)
	}
	fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if fd >= 0 {
		defer unix.Close(fd)
	}
	for k := range h.ENIs {
		l := &h.ENIs[k]
		if i, err := net.InterfaceByName(l.Name); err == nil {
			l.Index, l.MTU = i.Index, i.MTU
		}
		if fd >= 0 {
			if info, err := unix.IoctlGetEthtoolDrvinfo(fd, l.Name); err == nil {
				l.Driver = unix.ByteSliceToString(info.Driver[:])
			}
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.Dst != nil && !isDefault(r.Dst) {
				continue
			}
			d := Default{Family: 4, Index: r.LinkIndex, Metric: r.Priority, Proto: r.Protocol.String()}
			if fam == netlink.FAMILY_V6 {
				d.Family = 6
			}
			if i, err := net.InterfaceByIndex(r.LinkIndex); err == nil {
				d.Link = i.Name
			}
			h.MainDefaults = append(h.MainDefaults, d)
		}
	}
	return nil
}

func isDefault(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0
}

// For is the Host of a status: the ENIs that have a link, the
// configuration's choices (mtu = keep, primary only), and the root the
// files are read under (EC2NET_TEST_HOST_ROOT in tests). Collect fills
// in the kernel side.
func For(rows []netconf.ENIStatus, mtuKeep, primaryOnly bool) Host {
	h := Host{Root: os.Getenv("EC2NET_TEST_HOST_ROOT"), MTUKeep: mtuKeep, PrimaryOnly: primaryOnly}
	for _, r := range rows {
		if r.Link != "" {
			h.ENIs = append(h.ENIs, Link{Name: r.Link, MAC: r.MAC, Primary: r.Primary, MTU: r.MTU})
		}
	}
	return h
}
