package rtnl

import (
	"errors"
	"sync"
	"syscall"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Groups ec2net listens to: links, addresses, routes and rules of both
// families, on one socket.
var Groups = []int{
	unix.RTNLGRP_LINK,
	unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV6_IFADDR,
	unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE,
	unix.RTNLGRP_IPV4_RULE, unix.RTNLGRP_IPV6_RULE,
}

// ErrOverrun: the kernel dropped notifications because the socket's
// buffer was full (ENOBUFS). Events were lost: re-read everything.
var ErrOverrun = errors.New("netlink: notifications lost (receive buffer overrun)")

// ErrClosed: Close was called.
var ErrClosed = errors.New("netlink: subscription closed")

// Subscription receives rtnetlink notifications of a namespace.
type Subscription struct {
	mu       sync.Mutex // guards the descriptors against Close
	fd, wake int
}

// Subscribe opens one socket in ns joined to groups.
func Subscribe(ns netns.NsHandle, groups ...int) (*Subscription, error) {
	s := &Subscription{fd: -1, wake: -1}
	err := nsutil.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
		s.fd = fd
		return err
	})
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Subscription, error) {
		s.closeFDs()
		return nil, err
	}
	if err := unix.Bind(s.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fail(err)
	}
	for _, g := range groups {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, g); err != nil {
			return fail(err)
		}
	}
	// A burst (an instance with thousands of addresses reconfigured)
	// must not overrun the buffer; if it does, ErrOverrun says so.
	if unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
		_ = unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	if s.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fail(err)
	}
	return s, nil
}

// Receive blocks until notifications arrive and calls fn for each (its
// message type and body), until Close (ErrClosed), an overrun
// (ErrOverrun) or another socket error. Call it from one goroutine; the
// sockets are closed when it returns. Every successful Subscribe must be
// followed by one Receive.
func (s *Subscription) Receive(fn func(typ uint16, body []byte)) error {
	defer s.closeFDs()
	buf := make([]byte, 1<<16)
	fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}, {Fd: int32(s.wake), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		if fds[1].Revents != 0 {
			return ErrClosed
		}
		for {
			n, _, err := unix.Recvfrom(s.fd, buf, 0)
			switch {
			case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			case errors.Is(err, unix.ENOBUFS):
				return ErrOverrun
			case err != nil:
				return err
			}
			if err != nil {
				break
			}
			msgs, err := syscall.ParseNetlinkMessage(buf[:n])
			if err != nil {
				return err
			}
			for _, m := range msgs {
				fn(m.Header.Type, m.Data)
			}
		}
	}
}

// Close makes Receive return ErrClosed. Safe to call more than once and
// from any goroutine.
func (s *Subscription) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wake >= 0 {
		var one [8]byte
		one[0] = 1
		_, _ = unix.Write(s.wake, one[:])
	}
}

func (s *Subscription) closeFDs() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fd := range []*int{&s.fd, &s.wake} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}
