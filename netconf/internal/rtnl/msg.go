// Package rtnl is ec2net's byte-level rtnetlink: message encoders, a
// batching writer, dumpers and decoders for links, addresses, routes and
// rules. It knows nothing of ENIs, tables or ownership: callers (netconf)
// give it plain values and get plain values back.
//
// It exists rather than one vishvananda/netlink call per object because
// that library waits for each request's acknowledgement through the Go
// poller, allocates a 64 KiB buffer per request and a full object per
// dumped entry; with thousands of addresses that made a pass slower than
// `ip -batch`. Here requests are packed many to a sendmsg and dumps decode
// only the fields ec2net uses.
package rtnl

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Msg builds netlink messages back to back in one buffer.
type Msg struct {
	b     []byte
	start int // offset of the message being built
}

// Bytes returns the encoded messages.
func (m *Msg) Bytes() []byte { return m.b }

// Reset empties the buffer, keeping its memory.
func (m *Msg) Reset() { m.b, m.start = m.b[:0], 0 }

func (m *Msg) begin(typ uint16, flags uint16) {
	m.start = len(m.b)
	m.b = append(m.b, make([]byte, unix.NLMSG_HDRLEN)...)
	binary.NativeEndian.PutUint16(m.b[m.start+4:], typ)
	binary.NativeEndian.PutUint16(m.b[m.start+6:], flags|unix.NLM_F_REQUEST)
}

func (m *Msg) end() { binary.NativeEndian.PutUint32(m.b[m.start:], uint32(len(m.b)-m.start)) }

// setSeq stamps the message being built (the last one begun).
func (m *Msg) setSeq(seq uint32) { binary.NativeEndian.PutUint32(m.b[m.start+8:], seq) }

// addFlags ORs flags into the message being built.
func (m *Msg) addFlags(f uint16) {
	fl := binary.NativeEndian.Uint16(m.b[m.start+6:])
	binary.NativeEndian.PutUint16(m.b[m.start+6:], fl|f)
}

func (m *Msg) raw(p ...byte) { m.b = append(m.b, p...) }

func (m *Msg) u32raw(v uint32) { m.b = binary.NativeEndian.AppendUint32(m.b, v) }

func (m *Msg) attr(typ uint16, val []byte) {
	l := unix.SizeofRtAttr + len(val)
	m.b = binary.NativeEndian.AppendUint16(m.b, uint16(l))
	m.b = binary.NativeEndian.AppendUint16(m.b, typ)
	m.b = append(m.b, val...)
	for pad := (4 - l%4) % 4; pad > 0; pad-- {
		m.b = append(m.b, 0)
	}
}

func (m *Msg) attrU32(typ uint16, v uint32) {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	m.attr(typ, b[:])
}

func (m *Msg) attrAddr(typ uint16, a netip.Addr) {
	if a.Is4() {
		b := a.As4()
		m.attr(typ, b[:])
		return
	}
	b := a.As16()
	m.attr(typ, b[:])
}

// Attrs calls fn for each rtattr in b, stopping at the first malformed one.
// The nested flag is cleared from the type.
func Attrs(b []byte, fn func(typ uint16, val []byte)) {
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

func familyOf(a netip.Addr) byte {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// Family numbers as ec2net prints them: 4 or 6.
func family46(af byte) int {
	switch af {
	case unix.AF_INET:
		return 4
	case unix.AF_INET6:
		return 6
	}
	return 0
}
