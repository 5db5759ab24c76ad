package rtnl

import (
	"encoding/binary"
	"errors"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dumper reads one kind of object at a time on its own socket; use one
// per concurrent dump.
type Dumper struct {
	socks map[int]*nl.SocketHandle
}

// NewDumper opens a route netlink socket in ns. strict turns on
// NETLINK_GET_STRICT_CHK, with which the kernel filters route dumps by
// table and protocol itself (the rule dump request is not strict-clean on
// every kernel, so rules and addresses use a lax socket).
func NewDumper(ns netns.NsHandle, strict bool) (*Dumper, error) {
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
	return &Dumper{socks: map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}}, nil
}

// Close closes the socket.
func (d *Dumper) Close() {
	for _, s := range d.socks {
		s.Close()
	}
}

func (d *Dumper) dump(msgType uint16, hdr []byte, resType uint16, fn func(body []byte)) error {
	req := nl.NewNetlinkRequest(int(msgType), unix.NLM_F_DUMP)
	req.Sockets = d.socks
	req.AddRawData(hdr)
	return req.ExecuteIter(unix.NETLINK_ROUTE, resType, func(m []byte) bool {
		fn(m)
		return true
	})
}

// RetryDump repeats a dump the kernel reports as interrupted (the object
// set changed while it was read): an inconsistent dump is never used.
func RetryDump(fn func() error) error {
	var err error
	for i := 0; i < 5; i++ {
		if err = fn(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return err
		}
	}
	return err
}

// Routes calls fn for each route of table (0: every table) carrying proto
// (0: any), both families, filtered by the kernel when the socket is
// strict and here otherwise.
func (d *Dumper) Routes(table, proto int, fn func(Route)) error {
	hdr := make([]byte, unix.SizeofRtMsg, unix.SizeofRtMsg+8)
	hdr[5] = byte(proto)
	if table > 0 {
		a := make([]byte, 8)
		binary.NativeEndian.PutUint16(a[0:2], 8)
		binary.NativeEndian.PutUint16(a[2:4], unix.RTA_TABLE)
		binary.NativeEndian.PutUint32(a[4:8], uint32(table))
		hdr = append(hdr, a...)
	}
	return d.dump(unix.RTM_GETROUTE, hdr, unix.RTM_NEWROUTE, func(m []byte) {
		r, ok := DecodeRoute(m)
		if !ok || (table > 0 && r.Table != table) || (proto > 0 && r.Proto != proto) {
			return
		}
		fn(r)
	})
}

// Addrs calls fn for every address of every link, both families.
func (d *Dumper) Addrs(fn func(Addr)) error {
	hdr := make([]byte, unix.SizeofIfAddrmsg) // AF_UNSPEC: all families
	return d.dump(unix.RTM_GETADDR, hdr, unix.RTM_NEWADDR, func(m []byte) {
		if a, ok := DecodeAddr(m); ok {
			fn(a)
		}
	})
}

// rtextFilterSkipStats is RTEXT_FILTER_SKIP_STATS (linux/rtnetlink.h, 4.19).
const rtextFilterSkipStats = 1 << 3

// Links returns every link, without statistics (RTEXT_FILTER_SKIP_STATS
// spares the kernel filling them for nothing).
func (d *Dumper) Links() ([]Link, error) {
	hdr := make([]byte, unix.SizeofIfInfomsg, unix.SizeofIfInfomsg+8)
	ext := make([]byte, 8)
	binary.NativeEndian.PutUint16(ext[0:2], 8)
	binary.NativeEndian.PutUint16(ext[2:4], unix.IFLA_EXT_MASK)
	binary.NativeEndian.PutUint32(ext[4:8], rtextFilterSkipStats)
	hdr = append(hdr, ext...)
	var out []Link
	err := d.dump(unix.RTM_GETLINK, hdr, unix.RTM_NEWLINK, func(m []byte) {
		if l, ok := DecodeLink(m); ok {
			out = append(out, l)
		}
	})
	return out, err
}

// Rules calls fn for every rule of both families.
func (d *Dumper) Rules(fn func(Rule)) error {
	hdr := make([]byte, sizeofFibRuleHdr) // AF_UNSPEC: both families
	return d.dump(unix.RTM_GETRULE, hdr, unix.RTM_NEWRULE, func(m []byte) {
		if r, ok := DecodeRule(m); ok {
			fn(r)
		}
	})
}
