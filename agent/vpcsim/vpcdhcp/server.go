// Package vpcdhcp is the simulated VPC's DHCP service: DHCPv4 by MAC,
// stateful DHCPv6 (IA_NA) and router advertisements, served on one subnet
// bridge of the simulator's router namespace, so that a real
// distribution's DHCP client (systemd-networkd, NetworkManager, dhclient)
// configures the primary ENI exactly as it does on EC2.
//
// It is written in Go on top of github.com/insomniacslk/dhcp (message
// encoding) and github.com/mdlayher/ndp (router advertisement encoding)
// rather than run as dnsmasq, so that `make demo` and `make test` need
// nothing installed beyond what the simulator already needs, and so that
// a test can stop and resume answers (DHCP lost) without signalling a
// foreign process.
//
// What the VPC sends, as far as public sources show it (nothing here was
// captured on EC2):
//   - DHCPv4: the ENI's primary private IPv4 address with the subnet mask,
//     router = subnet base + 1, DNS = subnet base + 2 (the VPC resolver),
//     interface MTU (option 26) 9001, a one-hour lease.
//   - DHCPv6: stateful, the ENI's IPv6 addresses in one IA_NA. A dhclient
//     lease captured on EC2 (canonical/cloud-init#3302) shows renew 75 s,
//     rebind 120 s, preferred lifetime 150 s, valid lifetime 450 s: the
//     defaults here.
//   - Router advertisements with the managed flag set
//     (amazonlinux/amazon-ec2-net-utils#34 sets WithoutRA=solicit "since
//     we know in advance that the managed bit will be set"; systemd-networkd
//     on EC2 logs "flags MANAGED", coreos/bugs#1828), carrying the subnet
//     /64 as an on-link prefix without autonomous address configuration
//     (instances get no SLAAC address on EC2, only the DHCPv6 one:
//     flatcar/Flatcar#384, canonical/cloud-init#3980). The router is
//     fe80:ec2::1, the address the VPC answers at on every subnet.
//
// Clients are identified by the source MAC of their frames: DHCPv4 by
// chaddr, DHCPv6 by the link-layer source of the Solicit as read from a
// packet socket (DHCPv6 DUIDs often carry no MAC: networkd's default
// DUID-EN, NetworkManager's DUID-UUID).
package vpcdhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netns"
)

// Lease is what the VPC hands one ENI.
type Lease struct {
	// IPv4 is the ENI's primary private address with the subnet length;
	// invalid: no DHCPv4 answer for this MAC.
	IPv4 netip.Prefix
	// Router and DNS for DHCPv4 (options 3 and 6).
	Router netip.Addr
	DNS    []netip.Addr
	// MTU is option 26; 0 omits it.
	MTU int
	// Hostname is option 12; empty omits it.
	Hostname string
	// IPv6 are the addresses of the DHCPv6 IA_NA; empty: no DHCPv6 answer.
	IPv6 []netip.Addr
}

// Leases looks up the lease of the ENI with a MAC; false: unknown MAC, no
// answer (as the VPC ignores a MAC it did not assign).
type Leases interface {
	Lease(mac net.HardwareAddr) (Lease, bool)
}

// LeaseFunc adapts a function to Leases.
type LeaseFunc func(mac net.HardwareAddr) (Lease, bool)

// Lease implements Leases.
func (f LeaseFunc) Lease(mac net.HardwareAddr) (Lease, bool) { return f(mac) }

// Config describes one server.
type Config struct {
	// NetNS holds Interface; netns.None() means the caller's namespace.
	NetNS netns.NsHandle
	// Interface is the subnet's bridge (or any link) to serve on.
	Interface string
	// ServerIPv4 is the DHCPv4 server identifier, an address of
	// Interface; invalid disables DHCPv4.
	ServerIPv4 netip.Addr
	// IPv6Prefix is the subnet's /64, advertised on-link; invalid
	// disables DHCPv6 and router advertisements.
	IPv6Prefix netip.Prefix
	// RouterLinkLocal is the source of router advertisements; it must be
	// assigned to Interface (default fe80:ec2::1).
	RouterLinkLocal netip.Addr
	Leases          Leases

	// LeaseTime of DHCPv4 (default 1 h); renewal at half, rebinding at
	// 7/8 as RFC 2131 suggests.
	LeaseTime time.Duration
	// DHCPv6 timers (defaults 75 s, 120 s, 150 s, 450 s, as captured on
	// EC2).
	T1, T2, Preferred, Valid time.Duration
	// RAInterval between unsolicited router advertisements (default
	// 200 s; every router solicitation is answered at once), and the
	// advertised router lifetime (default 1800 s).
	RAInterval, RouterLifetime time.Duration

	// Logf receives one line per answer; optional.
	Logf func(format string, args ...any)
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.LeaseTime, time.Hour)
	def(&c.T1, 75*time.Second)
	def(&c.T2, 120*time.Second)
	def(&c.Preferred, 150*time.Second)
	def(&c.Valid, 450*time.Second)
	def(&c.RAInterval, 200*time.Second)
	def(&c.RouterLifetime, 1800*time.Second)
	if !c.RouterLinkLocal.IsValid() {
		c.RouterLinkLocal = netip.MustParseAddr("fe80:ec2::1")
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// Stats counts what a server answered, for tests.
type Stats struct {
	Offers, Acks, Naks          int // DHCPv4
	Advertises, Replies         int // DHCPv6
	RouterAdvertisements        int
	Ignored                     int // requests from unknown MACs or while not answering
	LastIPv4Client, LastV6Reply string
}

// Server serves one interface until Close.
type Server struct {
	cfg       Config
	answering atomic.Bool
	wg        sync.WaitGroup
	closers   []func() error

	mu    sync.Mutex
	stats Stats
}

// Start opens the sockets inside cfg.NetNS and starts answering.
func Start(cfg Config) (*Server, error) {
	cfg.defaults()
	if cfg.Interface == "" || cfg.Leases == nil {
		return nil, errors.New("vpcdhcp: Interface and Leases are required")
	}
	if !cfg.ServerIPv4.IsValid() && !cfg.IPv6Prefix.IsValid() {
		return nil, errors.New("vpcdhcp: nothing to serve (no ServerIPv4, no IPv6Prefix)")
	}
	s := &Server{cfg: cfg}
	s.answering.Store(true)
	var ifi *net.Interface
	err := nsutil.Do(cfg.NetNS, func() error {
		var err error
		if ifi, err = net.InterfaceByName(cfg.Interface); err != nil {
			return err
		}
		if cfg.ServerIPv4.IsValid() {
			if err := s.startV4(); err != nil {
				return fmt.Errorf("DHCPv4: %w", err)
			}
		}
		if cfg.IPv6Prefix.IsValid() {
			if err := s.startV6(ifi); err != nil {
				return fmt.Errorf("DHCPv6: %w", err)
			}
			if err := s.startRA(ifi); err != nil {
				return fmt.Errorf("router advertisements: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("vpcdhcp on %s: %w", cfg.Interface, err)
	}
	return s, nil
}

// SetAnswering turns DHCP answers (v4 and v6) off and on: off is the VPC's
// DHCP lost; requests are then dropped unanswered. Router advertisements
// go on (the router is still there).
func (s *Server) SetAnswering(on bool) { s.answering.Store(on) }

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *Server) count(f func(*Stats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.stats)
}

// lease looks up mac, counting an ignored request when there is nothing
// to answer.
func (s *Server) lease(mac net.HardwareAddr) (Lease, bool) {
	if !s.answering.Load() {
		s.count(func(st *Stats) { st.Ignored++ })
		return Lease{}, false
	}
	l, ok := s.cfg.Leases.Lease(mac)
	if !ok {
		s.count(func(st *Stats) { st.Ignored++ })
		s.cfg.Logf("vpcdhcp %s: no lease for %s, not answering", s.cfg.Interface, mac)
	}
	return l, ok
}

// Close stops every listener and waits for them; idempotent.
func (s *Server) Close() error {
	var errs []error
	for _, c := range s.closers {
		if err := c(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	s.closers = nil
	s.wg.Wait()
	return errors.Join(errs...)
}

// goServe runs fn until it returns (when its socket is closed).
func (s *Server) goServe(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}
