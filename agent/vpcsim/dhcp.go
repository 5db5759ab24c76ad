package vpcsim

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ec2net/ec2net/agent/vpcsim/vpcdhcp"
)

// DHCPOptions configure StartDHCP. Zero values are EC2's.
type DHCPOptions struct {
	// LeaseTime of DHCPv4 (default one hour).
	LeaseTime time.Duration
	// MTU sent in option 26 (default 9001, as the VPC sends; -1 omits it).
	MTU int
	// Hostname sends option 12 "ip-a-b-c-d", as the VPC does with
	// IP-based naming. Off by default: a client applying it renames the
	// test's container.
	Hostname bool
	// Logf receives one line per answer (default: the VPC's log).
	Logf func(format string, args ...any)
}

// DHCP is the VPC's DHCP service: one vpcdhcp.Server per subnet bridge in
// the router namespace, answering from the simulator's ENI records.
type DHCP struct {
	v    *VPC
	opts DHCPOptions

	mu      sync.Mutex
	servers map[string]*vpcdhcp.Server // by bridge
	off     bool
}

// StartDHCP serves DHCPv4, DHCPv6 and router advertisements on every
// subnet bridge; call Refresh after AddSubnet to serve new subnets too.
// Close it before the VPC (t.Cleanup order does that when StartDHCP is
// called after NewForTest).
func (v *VPC) StartDHCP(o DHCPOptions) (*DHCP, error) {
	if o.MTU == 0 {
		o.MTU = 9001
	}
	if o.Logf == nil {
		o.Logf = v.logf
	}
	// DHCPv4 clients pass the source/destination check by a rule of the
	// router's ruleset (nft.go), DHCPv6 ones by their link-local source.
	d := &DHCP{v: v, opts: o, servers: map[string]*vpcdhcp.Server{}}
	if err := d.Refresh(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Refresh starts a server on every subnet bridge that has none yet.
func (d *DHCP) Refresh() error {
	d.v.mu.Lock()
	subs := slices.Clone(d.v.subnets)
	h, err := d.v.handleLocked(d.v.Router)
	d.v.mu.Unlock()
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, sub := range subs {
		if _, ok := d.servers[sub.bridge]; ok {
			continue
		}
		srv, err := vpcdhcp.Start(vpcdhcp.Config{
			NetNS:           h,
			Interface:       sub.bridge,
			ServerIPv4:      sub.gw4,
			IPv6Prefix:      sub.ipv6,
			RouterLinkLocal: GatewayLinkLocal,
			Leases:          vpcdhcp.LeaseFunc(func(mac net.HardwareAddr) (vpcdhcp.Lease, bool) { return d.lease(sub, mac) }),
			LeaseTime:       d.opts.LeaseTime,
			Logf:            d.opts.Logf,
		})
		if err != nil {
			return fmt.Errorf("vpcsim: DHCP on %s: %w", sub.bridge, err)
		}
		srv.SetAnswering(!d.off)
		d.servers[sub.bridge] = srv
	}
	return nil
}

// lease is the VPC's answer for mac on subnet sub: the ENI's primary IPv4
// with the subnet's mask, router base+1, DNS base+2, and every IPv6
// address; nothing for a MAC that is not an ENI plugged into sub.
func (d *DHCP) lease(sub *subnet, mac net.HardwareAddr) (vpcdhcp.Lease, bool) {
	d.v.mu.Lock()
	defer d.v.mu.Unlock()
	e, ok := d.v.enis[mac.String()]
	if !ok || e.sub != sub || !e.linked {
		return vpcdhcp.Lease{}, false
	}
	var l vpcdhcp.Lease
	if sub.ipv4.IsValid() && len(e.IPv4) > 0 {
		l.IPv4 = netip.PrefixFrom(e.IPv4[0], sub.ipv4.Bits())
		l.Router = sub.gw4
		l.DNS = []netip.Addr{sub.gw4.Next()}
		if d.opts.MTU > 0 {
			l.MTU = d.opts.MTU
		}
		if d.opts.Hostname {
			l.Hostname = "ip-" + strings.ReplaceAll(e.IPv4[0].String(), ".", "-")
		}
	}
	if sub.ipv6.IsValid() {
		l.IPv6 = slices.Clone(e.IPv6)
	}
	return l, l.IPv4.IsValid() || len(l.IPv6) > 0
}

// SetAnswering turns every subnet's DHCP answers off (the VPC's DHCP
// lost: requests go unanswered) or on again.
func (d *DHCP) SetAnswering(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.off = !on
	for _, s := range d.servers {
		s.SetAnswering(on)
	}
}

// Stats returns each bridge's counters.
func (d *DHCP) Stats() map[string]vpcdhcp.Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]vpcdhcp.Stats{}
	for br, s := range d.servers {
		out[br] = s.Stats()
	}
	return out
}

// Close stops every server.
func (d *DHCP) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for br, s := range d.servers {
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("DHCP on %s: %w", br, err))
		}
	}
	d.servers = map[string]*vpcdhcp.Server{}
	return errors.Join(errs...)
}

// LaunchPrimaryUnconfigured plugs in the primary ENI as the instance sees
// it before its DHCP client ran: link down, no addresses, no routes. IMDS
// knows it (top-level mac). A DHCP client in the instance then configures
// it from StartDHCP's answers, as on EC2.
func (v *VPC) LaunchPrimaryUnconfigured(s ENISpec) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.launchPrimaryLocked(v.def, s, false)
}
