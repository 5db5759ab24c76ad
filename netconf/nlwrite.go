package netconf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The writes go through this small netlink writer rather than one
// vishvananda/netlink call per object: that library waits for each
// request's acknowledgement through the Go poller and allocates a 64 KiB
// receive buffer per request, which made ec2net slower than `ip -batch`.
// Here requests are packed many to a sendmsg; the kernel processes the
// messages of one send in order, synchronously, and only failures are
// answered (no NLM_F_ACK) except the last message of each batch, whose
// acknowledgement tells that everything before it has been processed.

// msgBuf builds netlink messages back to back.
type msgBuf struct {
	b     []byte
	start int // offset of the message being built
}

func (m *msgBuf) begin(typ uint16, flags uint16) {
	m.start = len(m.b)
	m.b = append(m.b, make([]byte, unix.NLMSG_HDRLEN)...)
	binary.NativeEndian.PutUint16(m.b[m.start+4:], typ)
	binary.NativeEndian.PutUint16(m.b[m.start+6:], flags|unix.NLM_F_REQUEST)
}

func (m *msgBuf) end() { binary.NativeEndian.PutUint32(m.b[m.start:], uint32(len(m.b)-m.start)) }

func (m *msgBuf) raw(p ...byte) { m.b = append(m.b, p...) }

func (m *msgBuf) u32raw(v uint32) { m.b = binary.NativeEndian.AppendUint32(m.b, v) }

func (m *msgBuf) attr(typ uint16, val []byte) {
	l := unix.SizeofRtAttr + len(val)
	m.b = binary.NativeEndian.AppendUint16(m.b, uint16(l))
	m.b = binary.NativeEndian.AppendUint16(m.b, typ)
	m.b = append(m.b, val...)
	for pad := (4 - l%4) % 4; pad > 0; pad-- {
		m.b = append(m.b, 0)
	}
}

func (m *msgBuf) attrU32(typ uint16, v uint32) {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	m.attr(typ, b[:])
}

func (m *msgBuf) attrAddr(typ uint16, a netip.Addr) {
	if a.Is4() {
		b := a.As4()
		m.attr(typ, b[:])
		return
	}
	b := a.As16()
	m.attr(typ, b[:])
}

func family(a netip.Addr) byte {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// Encoders, one per kind of write.

func encLinkUp(m *msgBuf, index int) {
	m.begin(unix.RTM_NEWLINK, 0)
	m.raw(unix.AF_UNSPEC, 0, 0, 0)
	m.u32raw(uint32(index))
	m.u32raw(unix.IFF_UP) // flags
	m.u32raw(unix.IFF_UP) // change mask
	m.end()
}

func encLinkMTU(m *msgBuf, index, mtu int) {
	m.begin(unix.RTM_SETLINK, 0)
	m.raw(unix.AF_UNSPEC, 0, 0, 0)
	m.u32raw(uint32(index))
	m.u32raw(0)
	m.u32raw(0)
	m.attrU32(unix.IFLA_MTU, uint32(mtu))
	m.end()
}

func encAltName(m *msgBuf, index int, name string) {
	m.begin(unix.RTM_NEWLINKPROP, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	m.raw(unix.AF_UNSPEC, 0, 0, 0)
	m.u32raw(uint32(index))
	m.u32raw(0)
	m.u32raw(0)
	var inner msgBuf
	inner.attr(unix.IFLA_ALT_IFNAME, append([]byte(name), 0))
	m.attr(unix.IFLA_PROP_LIST|unix.NLA_F_NESTED, inner.b)
	m.end()
}

func encAddr(m *msgBuf, del bool, index int, p netip.Prefix, flags uint32) {
	if del {
		m.begin(unix.RTM_DELADDR, 0)
	} else {
		m.begin(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	}
	m.raw(family(p.Addr()), byte(p.Bits()), byte(flags&0xff), unix.RT_SCOPE_UNIVERSE)
	m.u32raw(uint32(index))
	m.attrAddr(unix.IFA_LOCAL, p.Addr())
	m.attrAddr(unix.IFA_ADDRESS, p.Addr())
	if !del && flags > 0xff {
		m.attrU32(unix.IFA_FLAGS, flags)
	}
	m.end()
}

// routeMsg is a route as written: ours to add or replace, or a dumped
// one to delete.
type routeMsg struct {
	table, proto, scope, typ, tos, metric, oif int
	dst                                        netip.Prefix
	gw, src                                    netip.Addr
}

const (
	opAdd = iota
	opReplace
	opDel
)

func encRoute(m *msgBuf, op int, r routeMsg) {
	switch op {
	case opAdd:
		m.begin(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	case opReplace:
		m.begin(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE)
	default:
		m.begin(unix.RTM_DELROUTE, 0)
	}
	table := byte(unix.RT_TABLE_UNSPEC)
	if r.table < 256 {
		table = byte(r.table)
	}
	m.raw(family(r.dst.Addr()), byte(r.dst.Bits()), 0, byte(r.tos), table, byte(r.proto), byte(r.scope), byte(r.typ))
	m.u32raw(0)
	m.attrU32(unix.RTA_TABLE, uint32(r.table))
	if r.dst.Bits() > 0 {
		m.attrAddr(unix.RTA_DST, r.dst.Addr())
	}
	if r.gw.IsValid() {
		m.attrAddr(unix.RTA_GATEWAY, r.gw)
	}
	if r.src.IsValid() && op != opDel {
		m.attrAddr(unix.RTA_PREFSRC, r.src)
	}
	if r.oif > 0 {
		m.attrU32(unix.RTA_OIF, uint32(r.oif))
	}
	if r.metric > 0 {
		m.attrU32(unix.RTA_PRIORITY, uint32(r.metric))
	}
	m.end()
}

func encRule(m *msgBuf, del bool, fam, prio, table int, src netip.Prefix, proto int) {
	if del {
		m.begin(unix.RTM_DELRULE, 0)
	} else {
		m.begin(unix.RTM_NEWRULE, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	}
	f := byte(unix.AF_INET)
	if fam == 6 {
		f = unix.AF_INET6
	}
	srcLen := byte(0)
	if src.IsValid() {
		srcLen = byte(src.Bits())
	}
	t := byte(unix.RT_TABLE_UNSPEC)
	if table < 256 {
		t = byte(table)
	}
	m.raw(f, 0, srcLen, 0, t, 0, 0, unix.FR_ACT_TO_TBL)
	m.u32raw(0)
	m.attrU32(unix.FRA_PRIORITY, uint32(prio))
	m.attrU32(unix.FRA_TABLE, uint32(table))
	if src.IsValid() {
		m.attrAddr(unix.FRA_SRC, src.Addr())
	}
	if proto != 0 {
		m.attr(unix.FRA_PROTOCOL, []byte{byte(proto)})
	}
	m.end()
}

// nlWriter sends encoded requests in batches on a blocking netlink socket
// opened inside the namespace.
type nlWriter struct {
	fd   int
	seq  uint32
	rbuf []byte
}

// writeBatch is how many requests share one sendmsg. The failures of a
// batch are queued on the socket until read: a batch's worth of error
// messages must fit the receive buffer.
const writeBatch = 128

func newNLWriter(ns netns.NsHandle) (*nlWriter, error) {
	w := &nlWriter{fd: -1, rbuf: make([]byte, 1<<16)}
	err := nsutil.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		w.fd = fd
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(w.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(w.fd)
		return nil, err
	}
	// Errors need not echo our request; extended acks carry the kernel's
	// message. A receive timeout bounds a kernel that never answers.
	_ = unix.SetsockoptInt(w.fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	_ = unix.SetsockoptInt(w.fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	if unix.SetsockoptInt(w.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
		_ = unix.SetsockoptInt(w.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	tv := unix.Timeval{Sec: 10}
	_ = unix.SetsockoptTimeval(w.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return w, nil
}

func (w *nlWriter) close() {
	if w.fd >= 0 {
		unix.Close(w.fd)
		w.fd = -1
	}
}

// kernelError is a failed request with the kernel's extended message.
type kernelError struct {
	errno unix.Errno
	msg   string
}

func (e *kernelError) Error() string {
	if e.msg != "" {
		return e.errno.Error() + ": " + e.msg
	}
	return e.errno.Error()
}

func (e *kernelError) Unwrap() error { return e.errno }

// send writes the requests (each encoded by one function) and returns
// one error (nil: success) per request.
func (w *nlWriter) send(encs []func(m *msgBuf)) []error {
	errs := make([]error, len(encs))
	var m msgBuf
	for start := 0; start < len(encs); start += writeBatch {
		end := min(start+writeBatch, len(encs))
		m.b = m.b[:0]
		first := w.seq + 1
		for i := start; i < end; i++ {
			encs[i](&m)
			w.seq++
			binary.NativeEndian.PutUint32(m.b[m.start+8:], w.seq)
			if i == end-1 {
				fl := binary.NativeEndian.Uint16(m.b[m.start+6:])
				binary.NativeEndian.PutUint16(m.b[m.start+6:], fl|unix.NLM_F_ACK)
			}
		}
		last := w.seq
		if err := w.sendAll(m.b); err != nil {
			for i := start; i < end; i++ {
				errs[i] = err
			}
			continue
		}
		if err := w.collect(first, last, errs[start:end]); err != nil {
			for i := start; i < end; i++ {
				if errs[i] == nil {
					errs[i] = err
				}
			}
		}
	}
	return errs
}

func (w *nlWriter) sendAll(b []byte) error {
	for {
		err := unix.Sendto(w.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// collect reads answers until the acknowledgement of seq last, filling
// errs[seq-first] for every failed request.
func (w *nlWriter) collect(first, last uint32, errs []error) error {
	for {
		n, _, err := unix.Recvfrom(w.fd, w.rbuf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("netlink: waiting for acknowledgement: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(w.rbuf[:n])
		if err != nil {
			return err
		}
		for _, msg := range msgs {
			if msg.Header.Type != unix.NLMSG_ERROR || len(msg.Data) < 4 {
				continue
			}
			seq := msg.Header.Seq
			if seq < first || seq > last {
				continue // a stale answer of an earlier, failed batch
			}
			code := int32(binary.NativeEndian.Uint32(msg.Data[0:4]))
			if code != 0 {
				errs[seq-first] = &kernelError{errno: unix.Errno(-code), msg: extAckMsg(msg)}
			}
			if seq == last {
				return nil
			}
		}
	}
}

// extAckMsg returns NLMSGERR_ATTR_MSG from an extended acknowledgement.
func extAckMsg(msg syscall.NetlinkMessage) string {
	if msg.Header.Flags&unix.NLM_F_ACK_TLVS == 0 {
		return ""
	}
	// nlmsgerr: error code + the request's header (payload capped).
	off := 4 + unix.NLMSG_HDRLEN
	if msg.Header.Flags&unix.NLM_F_CAPPED == 0 && len(msg.Data) >= off {
		off = 4 + int(binary.NativeEndian.Uint32(msg.Data[4:8]))
		off = (off + 3) &^ 3
	}
	if off > len(msg.Data) {
		return ""
	}
	var s string
	attrs(msg.Data[off:], func(t uint16, v []byte) {
		if t == unix.NLMSGERR_ATTR_MSG {
			s = string(v)
			for len(s) > 0 && s[len(s)-1] == 0 {
				s = s[:len(s)-1]
			}
		}
	})
	return s
}
