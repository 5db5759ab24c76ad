package daemon

import (
	"context"
	"net"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// linkEvent is what the loop needs from an RTM_NEWLINK / RTM_DELLINK.
type linkEvent struct {
	index   int
	name    string
	mac     string
	deleted bool
}

// eventStreams carries netlink events from the namespace ec2net runs in.
type eventStreams struct {
	links     chan linkEvent
	deletions chan struct{} // an address, route or rule was deleted
	close     func()        // closes the sockets (also done when ctx ends)
}

// subscribeEvents is subscribe, replaceable by tests that make the socket fail.
var subscribeEvents = subscribe

// subscribe opens netlink subscriptions inside ns. They close when ctx is
// done. Link events are forwarded one by one (the loop coalesces);
// deletions are collapsed into a single pending signal.
func subscribe(ctx context.Context, ns netns.NsHandle, log *zap.Logger) (_ *eventStreams, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		if err != nil {
			cancel()
		}
	}()
	ev := &eventStreams{
		links:     make(chan linkEvent, 256),
		deletions: make(chan struct{}, 1),
		close:     cancel,
	}
	done := ctx.Done()
	var nsOpt *netns.NsHandle // nil: the current namespace, no setns
	if h := nsutil.ForNetlink(ns); h.IsOpen() {
		nsOpt = &h
	}
	onErr := func(err error) {
		if ctx.Err() == nil { // errors from closing our own sockets are expected
			log.Warn("netlink subscription error", zap.Error(err))
		}
	}

	links := make(chan netlink.LinkUpdate, 256)
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{
		Namespace: nsOpt, ErrorCallback: onErr, ReceiveBufferSize: 1 << 20,
	}); err != nil {
		return nil, err
	}
	addrs := make(chan netlink.AddrUpdate, 256)
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{
		Namespace: nsOpt, ErrorCallback: onErr, ReceiveBufferSize: 1 << 20,
	}); err != nil {
		return nil, err
	}
	routes := make(chan netlink.RouteUpdate, 256)
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{
		Namespace: nsOpt, ErrorCallback: onErr, ReceiveBufferSize: 1 << 20,
	}); err != nil {
		return nil, err
	}
	// vishvananda/netlink has no rule subscription: listen to the rule
	// groups directly; only the message type matters here.
	rules, err := nl.SubscribeAt(nsutil.ForNetlink(ns), netns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_IPV4_RULE, unix.RTNLGRP_IPV6_RULE)
	if err != nil {
		return nil, err
	}
	go func() {
		<-done
		rules.Close()
	}()

	deleted := func() {
		select {
		case ev.deletions <- struct{}{}:
		default:
		}
	}
	go func() {
		defer close(ev.links)
		for {
			select {
			case u, ok := <-links:
				if !ok {
					return
				}
				a := u.Link.Attrs()
				if a == nil || len(a.HardwareAddr) != 6 || a.Flags&net.FlagLoopback != 0 {
					continue
				}
				e := linkEvent{index: a.Index, name: a.Name, mac: a.HardwareAddr.String(), deleted: u.Header.Type == unix.RTM_DELLINK}
				select {
				case ev.links <- e:
				case <-done:
					return
				}
			case u, ok := <-addrs:
				if !ok {
					addrs = nil
					continue
				}
				if !u.NewAddr {
					deleted()
				}
			case u, ok := <-routes:
				if !ok {
					routes = nil
					continue
				}
				if u.Type == unix.RTM_DELROUTE {
					deleted()
				}
			case <-done:
				return
			}
		}
	}()
	go func() {
		for {
			msgs, _, err := rules.Receive()
			if err != nil {
				return
			}
			for _, m := range msgs {
				if m.Header.Type == unix.RTM_DELRULE {
					deleted()
				}
			}
		}
	}()
	return ev, nil
}
