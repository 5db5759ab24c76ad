package vpcsim

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"

	"github.com/ec2net/ec2net/agent/imds/fakeimds"
	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Instance is one EC2 instance of the VPC: a network namespace with its
// ENIs and its own view of IMDS (real IMDS answers each instance about
// itself). New creates the first one (the VPC's Instance and IMDS fields
// are its name and server); AddInstance adds more behind the same router.
// Methods are safe for concurrent use.
type Instance struct {
	// Name is the instance's network namespace (/run/netns/<Name>).
	Name string
	// IMDS is this instance's metadata, reached from inside the instance at
	// 169.254.169.254:80 and [fd00:ec2::254]:80 through its ENIs.
	IMDS *fakeimds.Server

	v     *VPC
	index int // 0 for the instance New creates
	ns    netns.NsHandle
	nl    *netlink.Handle
	// primary is its primary ENI (nil before LaunchPrimary).
	primary *eni
}

// imdsPort is where the instance's IMDS listens in the router namespace:
// port 80 for the first instance; the router steers the others' requests
// for port 80 to theirs (see addIMDSSteering).
func (i *Instance) imdsPort() uint16 {
	if i.index == 0 {
		return 80
	}
	return uint16(imdsPortBase + i.index)
}

const imdsPortBase = 8000

// mark tags frames from the instance's ENI ports in the router (0: none).
func (i *Instance) mark() uint32 { return uint32(i.index) }

// instanceIDFor is the IMDS instance-id of the instance with index k; the
// first keeps fakeimds' default.
func instanceIDFor(k int) string { return fmt.Sprintf("i-0fa4e2d1c0ffee%03d", k+1) }

// newInstanceLocked creates the namespace of instance number k and its
// netlink handle, and sets its sysctls. The instance is registered before
// anything can fail, so Close removes whatever was created.
func (v *VPC) newInstanceLocked(name string, k int) (*Instance, error) {
	h, err := nsutil.NewNamed(name)
	if err != nil {
		return nil, fmt.Errorf("vpcsim: create namespace %s: %w", name, err)
	}
	v.handles[name] = h
	i := &Instance{Name: name, v: v, index: k, ns: h}
	v.instances = append(v.instances, i)
	if i.nl, err = netlink.NewHandleAt(h); err != nil {
		return nil, fmt.Errorf("vpcsim: netlink in %s: %w", name, err)
	}
	for _, kv := range instanceSysctls(v.noDAD) {
		if err := sysctl(h, kv[0], kv[1]); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return i, nil
}

// startIMDSLocked starts the instance's fake IMDS in the router namespace
// on both IMDS addresses (on the router's lo) at the instance's port.
func (v *VPC) startIMDSLocked(i *Instance) error {
	if err := addAddrs(v.router, "lo", hostPrefix(IMDSAddr), hostPrefix(IMDSAddrIPv6)); err != nil {
		return err
	}
	i.IMDS = fakeimds.New()
	if i.index > 0 {
		i.IMDS.Set("instance-id", instanceIDFor(i.index))
	}
	for _, a := range []netip.Addr{IMDSAddr, IMDSAddrIPv6} {
		if _, err := i.IMDS.StartInNetNS(v.Router, netip.AddrPortFrom(a, i.imdsPort()).String()); err != nil {
			return fmt.Errorf("vpcsim: start IMDS of %s: %w", i.Name, err)
		}
	}
	if i.index > 0 {
		if err := addIMDSSteering(v.handles[v.Router], i.index == 1, i.mark(), i.imdsPort()); err != nil {
			return fmt.Errorf("vpcsim: steer IMDS requests of %s: %w", i.Name, err)
		}
	}
	return nil
}

// addIMDSSteering sends requests for IMDS (port 80) that carry the mark
// of an instance's ENI ports to that instance's IMDS port:
//
//	table ip vpcsim_imds {            (and table ip6 vpcsim_imds alike)
//		chain prerouting {
//			type nat hook prerouting priority dstnat; policy accept;
//			meta mark M ip daddr 169.254.169.254 tcp dport 80 dnat ip to 169.254.169.254:P
//		}
//	}
//
// The tables exist only once a second instance does, so a single-instance
// router has no NAT (nor connection tracking) at all.
func addIMDSSteering(h netns.NsHandle, create bool, mark uint32, port uint16) error {
	c, err := nftConn(h)
	if err != nil {
		return err
	}
	accept := nftables.ChainPolicyAccept
	for _, a := range []netip.Addr{IMDSAddr, IMDSAddrIPv6} {
		t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "vpcsim_imds"}
		if a.Is6() {
			t.Family = nftables.TableFamilyIPv6
		}
		ch := &nftables.Chain{Table: t, Name: "prerouting", Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept}
		if create {
			c.AddTable(t)
			c.AddChain(ch)
		}
		var exprs []expr.Any
		exprs = append(exprs, matchMark(mark)...)
		exprs = append(exprs, matchPrefix(hostPrefix(a), false, false, false)...)
		exprs = append(exprs, matchTCPDport(80)...)
		exprs = append(exprs, dnatTo(a, port)...)
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
	}
	return c.Flush()
}

// AddInstance adds an instance behind the VPC's router: a namespace
// "<base>-i<N>" (N = 2, 3, ...) with the same sysctls as the first and its
// own fake IMDS (instance-id i-0fa4e2d1c0ffee00N). Launch its primary ENI
// with its LaunchPrimary.
func (v *VPC) AddInstance() (*Instance, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil, errors.New("vpcsim: closed")
	}
	k := len(v.instances)
	name := fmt.Sprintf("%s-i%d", v.base, k+1)
	i, err := v.newInstanceLocked(name, k)
	if err != nil {
		return nil, err
	}
	if err := v.startIMDSLocked(i); err != nil {
		return nil, err
	}
	v.logf("vpcsim: instance %s added (IMDS instance-id %s)", name, instanceIDFor(k))
	return i, nil
}

// Instances lists the VPC's instances, the one New created first.
func (v *VPC) Instances() []*Instance {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.instances)
}

// DefaultInstance is the instance New created (namespace v.Instance, IMDS
// v.IMDS), the one the VPC's own ENI and probe methods act on.
func (v *VPC) DefaultInstance() *Instance { return v.def }

// InstanceOf returns the instance the ENI is attached to, or nil.
func (v *VPC) InstanceOf(mac string) *Instance {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, err := v.eniLocked(mac)
	if err != nil {
		return nil
	}
	return e.inst
}

// String is the instance's namespace name.
func (i *Instance) String() string { return i.Name }

// InstanceID is the instance-id its IMDS serves.
func (i *Instance) InstanceID() string { return instanceIDFor(i.index) }

// LaunchPrimary plugs in the instance's primary ENI; see VPC.LaunchPrimary.
func (i *Instance) LaunchPrimary(s ENISpec) error {
	i.v.mu.Lock()
	defer i.v.mu.Unlock()
	return i.v.launchPrimaryLocked(i, s, true)
}

// Attach hot-attaches an ENI to the instance; see VPC.Attach.
func (i *Instance) Attach(s ENISpec) error {
	i.v.mu.Lock()
	defer i.v.mu.Unlock()
	e, err := i.v.attachLinkLocked(i, s)
	if err != nil {
		return err
	}
	i.IMDS.AttachENI(i.v.imdsENILocked(e))
	e.inIMDS = true
	return nil
}

// AttachLinkOnly is Attach without telling IMDS; see VPC.AttachLinkOnly.
func (i *Instance) AttachLinkOnly(s ENISpec) error {
	i.v.mu.Lock()
	defer i.v.mu.Unlock()
	_, err := i.v.attachLinkLocked(i, s)
	return err
}

// LinkName returns the instance's current name for the link with the
// MAC, or "" when the instance has none.
func (i *Instance) LinkName(mac string) string {
	i.v.mu.Lock()
	defer i.v.mu.Unlock()
	return i.v.linkNameLocked(i, mac)
}

// ENIs returns the specs of the ENIs attached to (or announced for) the
// instance, with their current addresses, sorted by link name.
func (i *Instance) ENIs() []ENISpec {
	i.v.mu.Lock()
	defer i.v.mu.Unlock()
	var out []ENISpec
	for _, e := range i.v.enis {
		if e.inst != i {
			continue
		}
		s := e.ENISpec
		s.IPv4 = slices.Clone(s.IPv4)
		s.IPv6 = slices.Clone(s.IPv6)
		s.IPv4Prefixes = slices.Clone(s.IPv4Prefixes)
		s.IPv6Prefixes = slices.Clone(s.IPv6Prefixes)
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b ENISpec) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// PrimaryIPv4 returns the primary ENI's primary IPv4 address (invalid
// before LaunchPrimary).
func (i *Instance) PrimaryIPv4() netip.Addr {
	i.v.mu.Lock()
	defer i.v.mu.Unlock()
	if i.primary == nil || len(i.primary.IPv4) == 0 {
		return netip.Addr{}
	}
	return i.primary.IPv4[0]
}

// Command prepares argv to run inside the instance; see VPC.Command.
func (i *Instance) Command(argv ...string) (*exec.Cmd, error) {
	return i.v.CommandContext(context.Background(), i.Name, argv...)
}

// CommandContext is Command with a context that kills the process.
func (i *Instance) CommandContext(ctx context.Context, argv ...string) (*exec.Cmd, error) {
	return i.v.CommandContext(ctx, i.Name, argv...)
}

// handle returns the instance's namespace, or an error once the VPC is
// closed.
func (i *Instance) handle() (netns.NsHandle, error) { return i.v.Handle(i.Name) }
