package netconf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/ec2net/ec2net/netconf/plan"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Addresses and rules are dumped and parsed here rather than through
// vishvananda/netlink's AddrList and RuleList: on an instance with
// thousands of addresses those two allocate a full object per entry
// and dominate a no-change pass, which must stay within a few
// milliseconds. Only the fields the reconciler uses are decoded.

type rawDumper struct {
	socks map[int]*nl.SocketHandle
}

// newRawDumper opens a route netlink socket in ns. strict turns on
// NETLINK_GET_STRICT_CHK, with which the kernel filters route dumps by
// table and protocol itself (the rule dump request is not strict-clean
// on every kernel, so rules and addresses use a lax socket).
func newRawDumper(ns netns.NsHandle, strict bool) (*rawDumper, error) {
	s, err := nl.GetNetlinkSocketAt(nsutil.ForNetlink(ns), netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	if strict {
		if err := unix.SetsockoptInt(s.GetFd(), unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1); err != nil {
			s.Close()
			return nil, err
		}
	}
	return &rawDumper{socks: map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}}, nil
}

func (d *rawDumper) close() {
	for _, s := range d.socks {
		s.Close()
	}
}

func (d *rawDumper) dump(msgType uint16, hdr []byte, resType uint16, fn func(body []byte)) error {
	req := nl.NewNetlinkRequest(int(msgType), unix.NLM_F_DUMP)
	req.Sockets = d.socks
	req.AddRawData(hdr)
	return req.ExecuteIter(unix.NETLINK_ROUTE, resType, func(m []byte) bool {
		fn(m)
		return true
	})
}

// attrs calls fn for each rtattr in b.
func attrs(b []byte, fn func(typ uint16, val []byte)) {
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		t := binary.NativeEndian.Uint16(b[2:4]) &^ unix.NLA_F_NESTED
		if l < unix.SizeofRtAttr || l > len(b) {
			return
		}
		fn(t, b[unix.SizeofRtAttr:l])
		al := (l + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1)
		if al > len(b) {
			return
		}
		b = b[al:]
	}
}

func u32(v []byte) uint32 {
	if len(v) < 4 {
		return 0
	}
	return binary.NativeEndian.Uint32(v)
}

func ipFrom(v []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(v)
	return a
}

// dumpRoutes calls fn for each route of table (0: every table) carrying
// protocol (0: any), both families, filtered by the kernel when the socket
// is strict.
func (d *rawDumper) dumpRoutes(table, protocol int, fn func(kr kRoute)) error {
	hdr := make([]byte, unix.SizeofRtMsg, unix.SizeofRtMsg+8)
	hdr[5] = byte(protocol)
	if table > 0 {
		a := make([]byte, 8)
		binary.NativeEndian.PutUint16(a[0:2], 8)
		binary.NativeEndian.PutUint16(a[2:4], unix.RTA_TABLE)
		binary.NativeEndian.PutUint32(a[4:8], uint32(table))
		hdr = append(hdr, a...)
	}
	return d.dump(unix.RTM_GETROUTE, hdr, unix.RTM_NEWROUTE, func(m []byte) {
		if len(m) < unix.SizeofRtMsg {
			return
		}
		kr := kRoute{table: int(m[4]), proto: int(m[5]), scope: int(m[6]), typ: int(m[7]), tos: int(m[3])}
		if binary.NativeEndian.Uint32(m[8:12])&unix.RTM_F_CLONED != 0 {
			return
		}
		switch m[0] {
		case unix.AF_INET:
			kr.family = 4
		case unix.AF_INET6:
			kr.family = 6
		default:
			return
		}
		dstLen := int(m[1])
		var dst netip.Addr
		attrs(m[unix.SizeofRtMsg:], func(t uint16, v []byte) {
			switch t {
			case unix.RTA_DST:
				dst = ipFrom(v)
			case unix.RTA_GATEWAY:
				kr.gw = ipFrom(v)
			case unix.RTA_PREFSRC:
				kr.src = ipFrom(v)
			case unix.RTA_OIF:
				kr.oif = int(u32(v))
			case unix.RTA_PRIORITY:
				kr.metric = int(u32(v))
			case unix.RTA_TABLE:
				kr.table = int(u32(v))
			case unix.RTA_MULTIPATH:
				kr.multi = true
			}
		})
		if !dst.IsValid() {
			if kr.family == 4 {
				dst = netip.IPv4Unspecified()
			} else {
				dst = netip.IPv6Unspecified()
			}
		}
		kr.dst = netip.PrefixFrom(dst, dstLen)
		if (table > 0 && kr.table != table) || (protocol > 0 && kr.proto != protocol) {
			return // a kernel that does not filter
		}
		fn(kr)
	})
}

// dumpAddrs fills k.addrs: every address of every link.
func (d *rawDumper) dumpAddrs(k *kernel) error {
	hdr := make([]byte, unix.SizeofIfAddrmsg) // AF_UNSPEC: all families
	return d.dump(unix.RTM_GETADDR, hdr, unix.RTM_NEWADDR, func(m []byte) {
		if len(m) < unix.SizeofIfAddrmsg {
			return
		}
		plen := int(m[1])
		flags := int(m[2])
		index := int(binary.NativeEndian.Uint32(m[4:8]))
		var local, address netip.Addr
		attrs(m[unix.SizeofIfAddrmsg:], func(t uint16, v []byte) {
			switch t {
			case unix.IFA_LOCAL:
				local = ipFrom(v)
			case unix.IFA_ADDRESS:
				address = ipFrom(v)
			case unix.IFA_FLAGS:
				if len(v) >= 4 {
					flags = int(binary.NativeEndian.Uint32(v))
				}
			}
		})
		// IFA_LOCAL is the interface's own address; IFA_ADDRESS is the
		// peer on point-to-point links and the same address otherwise.
		a := local
		if !a.IsValid() {
			a = address
		}
		if !a.IsValid() {
			return
		}
		l := k.addrs[index]
		if l == nil {
			l = make([]kAddr, 0, 16)
		}
		k.addrs[index] = append(l, kAddr{prefix: netip.PrefixFrom(a, plen), flags: flags})
	})
}

// dumpLinks returns every link, without statistics (RTEXT_FILTER_SKIP_STATS
// spares the kernel filling them for nothing).
func (d *rawDumper) dumpLinks() ([]plan.LinkInfo, error) {
	hdr := make([]byte, unix.SizeofIfInfomsg, unix.SizeofIfInfomsg+8)
	ext := make([]byte, 8)
	binary.NativeEndian.PutUint16(ext[0:2], 8)
	binary.NativeEndian.PutUint16(ext[2:4], unix.IFLA_EXT_MASK)
	binary.NativeEndian.PutUint32(ext[4:8], rtextFilterSkipStats)
	hdr = append(hdr, ext...)
	var out []plan.LinkInfo
	err := d.dump(unix.RTM_GETLINK, hdr, unix.RTM_NEWLINK, func(m []byte) {
		if len(m) < unix.SizeofIfInfomsg {
			return
		}
		li := plan.LinkInfo{Index: int(int32(binary.NativeEndian.Uint32(m[4:8])))}
		li.Up = binary.NativeEndian.Uint32(m[8:12])&unix.IFF_UP != 0
		attrs(m[unix.SizeofIfInfomsg:], func(t uint16, v []byte) {
			switch t {
			case unix.IFLA_IFNAME:
				li.Name = strings.TrimRight(string(v), "\x00")
			case unix.IFLA_ADDRESS:
				li.MAC = macString(v)
			case unix.IFLA_MTU:
				li.MTU = int(u32(v))
			case unix.IFLA_PROP_LIST:
				attrs(v, func(t uint16, v []byte) {
					if t == unix.IFLA_ALT_IFNAME {
						li.AltNames = append(li.AltNames, strings.TrimRight(string(v), "\x00"))
					}
				})
			}
		})
		out = append(out, li)
	})
	return out, err
}

func macString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	const hexdigits = "0123456789abcdef"
	buf := make([]byte, 0, len(b)*3)
	for i, c := range b {
		if i > 0 {
			buf = append(buf, ':')
		}
		buf = append(buf, hexdigits[c>>4], hexdigits[c&0xf])
	}
	return string(buf)
}

// rtextFilterSkipStats is RTEXT_FILTER_SKIP_STATS (linux/rtnetlink.h, 4.19).
const rtextFilterSkipStats = 1 << 3

const sizeofFibRuleHdr = 12

// dumpRules fills k.rules with the rules the reconciler cares about.
func (d *rawDumper) dumpRules(k *kernel) error {
	hdr := make([]byte, sizeofFibRuleHdr) // AF_UNSPEC: both families
	return d.dump(unix.RTM_GETRULE, hdr, unix.RTM_NEWRULE, func(m []byte) {
		if len(m) < sizeofFibRuleHdr {
			return
		}
		kr := kRule{family: int(m[0]), table: int(m[4]), simple: true}
		dstLen, srcLen, tos, action := int(m[1]), int(m[2]), int(m[3]), int(m[7])
		flags := binary.NativeEndian.Uint32(m[8:12])
		switch kr.family {
		case unix.AF_INET:
			kr.family = 4
		case unix.AF_INET6:
			kr.family = 6
		default:
			return
		}
		var sel []string
		if flags&unix.FIB_RULE_INVERT != 0 {
			sel = append(sel, "not")
		}
		if tos != 0 {
			sel = append(sel, "tos "+strconv.Itoa(tos))
		}
		if action != unix.FR_ACT_TO_TBL {
			sel = append(sel, "action "+strconv.Itoa(action))
		}
		var mark, mask uint32
		var hasMark bool
		attrs(m[sizeofFibRuleHdr:], func(t uint16, v []byte) {
			switch t {
			case unix.FRA_SRC:
				kr.src = netip.PrefixFrom(ipFrom(v), srcLen)
			case unix.FRA_PRIORITY:
				kr.prio = int(u32(v))
			case unix.FRA_TABLE:
				kr.table = int(u32(v))
			case unix.FRA_PROTOCOL:
				if len(v) > 0 {
					kr.proto = int(v[0])
				}
			case unix.FRA_DST:
				sel = append(sel, "to "+netip.PrefixFrom(ipFrom(v), dstLen).String())
			case unix.FRA_FWMARK:
				mark, hasMark = u32(v), true
			case unix.FRA_FWMASK:
				mask, hasMark = u32(v), true
			case unix.FRA_IIFNAME:
				sel = append(sel, "iif "+strings.TrimRight(string(v), "\x00"))
			case unix.FRA_OIFNAME:
				sel = append(sel, "oif "+strings.TrimRight(string(v), "\x00"))
			case unix.FRA_GOTO:
				sel = append(sel, "goto "+strconv.Itoa(int(u32(v))))
			case unix.FRA_SUPPRESS_PREFIXLEN:
				if u32(v) != 0xffffffff {
					sel = append(sel, "suppress_prefixlength "+strconv.Itoa(int(u32(v))))
				}
			case unix.FRA_SUPPRESS_IFGROUP:
				if u32(v) != 0xffffffff {
					sel = append(sel, "suppress_ifgroup "+strconv.Itoa(int(u32(v))))
				}
			case unix.FRA_L3MDEV:
				if len(v) > 0 && v[0] != 0 {
					sel = append(sel, "l3mdev")
				}
			case unix.FRA_TUN_ID:
				sel = append(sel, "tun_id")
			case unix.FRA_UID_RANGE:
				if len(v) >= 8 {
					lo, hi := binary.NativeEndian.Uint32(v[0:4]), binary.NativeEndian.Uint32(v[4:8])
					if lo != 0 || hi != 0xffffffff {
						sel = append(sel, fmt.Sprintf("uidrange %d-%d", lo, hi))
					}
				}
			case unix.FRA_IP_PROTO:
				if len(v) > 0 {
					sel = append(sel, "ipproto "+strconv.Itoa(int(v[0])))
				}
			case unix.FRA_SPORT_RANGE:
				sel = append(sel, "sport")
			case unix.FRA_DPORT_RANGE:
				sel = append(sel, "dport")
			case unix.FRA_FLOW:
				sel = append(sel, "realms")
			}
		})
		if hasMark {
			sel = append(sel, fmt.Sprintf("fwmark 0x%x/0x%x", mark, mask))
		}
		if len(sel) > 0 {
			kr.simple = false
			kr.selectors = strings.Join(sel, " ")
		}
		if kr.proto == Protocol || plan.InRange(kr.prio) || plan.InRange(kr.table) || kr.src.IsValid() {
			k.rules = append(k.rules, kr)
		}
	})
}
