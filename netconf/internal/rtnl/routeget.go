package rtnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// RouteQuery is one route lookup, the question the kernel asks for a
// packet (RTM_GETROUTE, what `ip route get` sends).
type RouteQuery struct {
	Dst netip.Addr // destination (required)
	Src netip.Addr // source address; invalid: the kernel picks one
	// IIF makes it the lookup for a packet arriving on that link (input
	// routing, with the reverse-path filter); 0: a packet this host sends.
	IIF  int
	OIF  int    // bind the lookup to an output link; 0: none
	Mark uint32 // the packet's firewall mark
	// FIBMatch asks for the route entry that matched (its prefix, table,
	// protocol) instead of the resolved path (`ip route get fibmatch`).
	FIBMatch bool
}

// RouteAnswer is the kernel's answer to a RouteQuery.
type RouteAnswer struct {
	Family  int // 4 or 6
	Type    int // unix.RTN_*: UNICAST, LOCAL, UNREACHABLE, BLACKHOLE, PROHIBIT...
	Table   int // the table the match was found in
	Proto   int // with FIBMatch: the matched route's protocol
	Scope   int
	Dst     netip.Prefix // the query's destination, or with FIBMatch the matched route's prefix
	Src     netip.Addr   // the query's source, when it gave one
	PrefSrc netip.Addr   // the source the kernel would choose
	Gw      netip.Addr   // next hop; invalid when directly connected
	OIF     int          // output link (lo for local delivery)
	IIF     int          // input link of an input lookup
	Metric  int
	// Multipath: the matched route has several next hops (FIBMatch);
	// OIF and Gw are then not set.
	Multipath bool
}

// EncodeRouteGet encodes one lookup. The answer carries the table the
// match came from (RTM_F_LOOKUP_TABLE).
func (m *Msg) EncodeRouteGet(q RouteQuery) {
	m.begin(unix.RTM_GETROUTE, 0)
	srcLen := byte(0)
	if q.Src.IsValid() {
		srcLen = byte(q.Src.BitLen())
	}
	m.raw(familyOf(q.Dst), byte(q.Dst.BitLen()), srcLen, 0, 0, 0, 0, 0)
	flags := uint32(unix.RTM_F_LOOKUP_TABLE)
	if q.FIBMatch {
		flags |= unix.RTM_F_FIB_MATCH
	}
	m.u32raw(flags)
	m.attrAddr(unix.RTA_DST, q.Dst)
	if q.Src.IsValid() {
		m.attrAddr(unix.RTA_SRC, q.Src)
	}
	if q.IIF > 0 {
		m.attrU32(unix.RTA_IIF, uint32(q.IIF))
	}
	if q.OIF > 0 {
		m.attrU32(unix.RTA_OIF, uint32(q.OIF))
	}
	if q.Mark != 0 {
		m.attrU32(unix.RTA_MARK, q.Mark)
	}
	m.end()
}

// DecodeRouteAnswer decodes the RTM_NEWROUTE body that answers a lookup.
// Unlike DecodeRoute it keeps cached clones (every resolved answer is
// one) and reads the input link.
func DecodeRouteAnswer(m []byte) (RouteAnswer, bool) {
	if len(m) < unix.SizeofRtMsg {
		return RouteAnswer{}, false
	}
	a := RouteAnswer{Family: family46(m[0]), Table: int(m[4]), Proto: int(m[5]), Scope: int(m[6]), Type: int(m[7])}
	if a.Family == 0 {
		return RouteAnswer{}, false
	}
	dstLen := int(m[1])
	var dst netip.Addr
	Attrs(m[unix.SizeofRtMsg:], func(t uint16, v []byte) {
		switch t {
		case unix.RTA_DST:
			dst = ipFrom(v)
		case unix.RTA_SRC:
			a.Src = ipFrom(v)
		case unix.RTA_PREFSRC:
			a.PrefSrc = ipFrom(v)
		case unix.RTA_GATEWAY:
			a.Gw = ipFrom(v)
		case unix.RTA_VIA:
			// An IPv4 route via an IPv6 next hop: family (2 bytes) + address.
			if len(v) > 2 {
				a.Gw = ipFrom(v[2:])
			}
		case unix.RTA_OIF:
			a.OIF = int(u32(v))
		case unix.RTA_IIF:
			a.IIF = int(u32(v))
		case unix.RTA_PRIORITY:
			a.Metric = int(u32(v))
		case unix.RTA_TABLE:
			a.Table = int(u32(v))
		case unix.RTA_MULTIPATH:
			a.Multipath = true
		}
	})
	if !dst.IsValid() || family46(familyOf(dst)) != a.Family {
		dst = netip.IPv4Unspecified()
		if a.Family == 6 {
			dst = netip.IPv6Unspecified()
		}
	}
	if dstLen > dst.BitLen() {
		return RouteAnswer{}, false
	}
	a.Dst = netip.PrefixFrom(dst, dstLen)
	return a, true
}

// RouteGet asks the kernel every query, up to WriteBatch per sendmsg,
// and returns one answer or one error (the kernel's errno, e.g.
// ENETUNREACH, or EINVAL for a packet the reverse-path filter drops) per
// query. Each query gets exactly one message back, so none asks for an
// acknowledgement.
func (w *Writer) RouteGet(qs []RouteQuery) ([]RouteAnswer, []error) {
	answers := make([]RouteAnswer, len(qs))
	errs := make([]error, len(qs))
	for start := 0; start < len(qs); start += WriteBatch {
		end := min(start+WriteBatch, len(qs))
		w.m.Reset()
		first := w.seq + 1
		for i := start; i < end; i++ {
			w.m.EncodeRouteGet(qs[i])
			w.seq++
			w.m.setSeq(w.seq)
		}
		err := w.sendAll(w.m.b)
		if err == nil {
			err = w.collectAnswers(first, answers[start:end], errs[start:end])
		}
		if err != nil {
			for i := start; i < end; i++ {
				if errs[i] == nil && !answers[i].Dst.IsValid() {
					errs[i] = err
				}
			}
		}
	}
	return answers, errs
}

var errNoAnswer = errors.New("netlink: no answer to a route lookup")

// collectAnswers reads until every query of the batch starting at seq
// first has its answer or its error.
func (w *Writer) collectAnswers(first uint32, answers []RouteAnswer, errs []error) error {
	left := len(answers)
	for left > 0 {
		n, _, err := unix.Recvfrom(w.fd, w.rbuf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("netlink: waiting for route lookups: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(w.rbuf[:n])
		if err != nil {
			return err
		}
		for _, msg := range msgs {
			i := int(msg.Header.Seq) - int(first)
			if msg.Header.Seq < first || i >= len(answers) {
				continue // a stale answer of an earlier batch
			}
			switch msg.Header.Type {
			case unix.NLMSG_ERROR:
				if len(msg.Data) < 4 {
					continue
				}
				code := int32(binary.NativeEndian.Uint32(msg.Data[0:4]))
				if code == 0 {
					continue // an acknowledgement; the answer is counted
				}
				errs[i] = &KernelError{Errno: unix.Errno(-code), Msg: extAckMsg(msg.Header.Flags, msg.Data)}
			case unix.RTM_NEWROUTE:
				a, ok := DecodeRouteAnswer(msg.Data)
				if !ok {
					errs[i] = errNoAnswer
				}
				answers[i] = a
			default:
				continue
			}
			left--
		}
	}
	return nil
}
