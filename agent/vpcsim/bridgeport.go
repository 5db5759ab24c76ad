package vpcsim

import (
	"errors"
	"fmt"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// bridgePortState reads a bridge port's STP state (unix.BR_STATE_*) from
// the link's IFLA_LINKINFO / IFLA_INFO_SLAVE_DATA / IFLA_BRPORT_STATE, what
// `bridge link show` prints as "state forwarding". vishvananda/netlink
// does not decode bridge port attributes, so the request is built here; the
// socket is opened on a thread inside namespace h.
func bridgePortState(h netns.NsHandle, index int) (uint8, error) {
	var msgs [][]byte
	err := nsutil.Do(h, func() error {
		req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
		msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
		msg.Index = int32(index)
		req.AddData(msg)
		var err error
		msgs, err = req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("vpcsim: read link %d: %w", index, err)
	}
	for _, m := range msgs {
		if len(m) < unix.SizeofIfInfomsg {
			continue
		}
		if st, ok := brportState(m[unix.SizeofIfInfomsg:]); ok {
			return st, nil
		}
	}
	return 0, errors.New("vpcsim: link is not a bridge port")
}

// brStateForwarding is BR_STATE_FORWARDING (linux/if_bridge.h).
const brStateForwarding = 3

// nlaTypeMask strips the nested and byte-order flags from an attribute type.
const nlaTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)

// brportState finds IFLA_BRPORT_STATE in a link message's attributes.
func brportState(attrs []byte) (uint8, bool) {
	find := func(b []byte, typ uint16) []byte {
		as, err := nl.ParseRouteAttr(b)
		if err != nil {
			return nil
		}
		for _, a := range as {
			if a.Attr.Type&nlaTypeMask == typ {
				return a.Value
			}
		}
		return nil
	}
	info := find(attrs, unix.IFLA_LINKINFO)
	if info == nil {
		return 0, false
	}
	slave := find(info, unix.IFLA_INFO_SLAVE_DATA)
	if slave == nil {
		return 0, false
	}
	st := find(slave, unix.IFLA_BRPORT_STATE)
	if len(st) < 1 {
		return 0, false
	}
	return st[0], true
}
