// Package vpcsim simulates the part of an EC2 VPC that ec2net depends on,
// inside network namespaces the simulator creates and deletes itself:
//
//	Instance  eth0, eth1, ...   one veth per ENI (AddInstance adds more
//	   │                        instances, each with its own ENIs)
//	Router    one bridge per subnet (gateway = first host, fe80:ec2::1),
//	          nftables bridge rules = the VPC source/destination check,
//	          permanent neighbour entries for every assigned address,
//	          one fake IMDS per instance at 169.254.169.254:80 on lo
//	          (requests steered by the ENI port they came from)
//	   │ (veth)
//	Remote    a host outside the VPC with a TCP echo listener
//
// The source/destination check is the reason ec2net exists: a packet that
// leaves an ENI with a source address the ENI does not own is dropped, so a
// secondary ENI's traffic fails until policy routing sends it out of the
// right link. The simulator enforces exactly that, so tests can show the
// failure before ec2net runs and the success after. Move models the
// high-availability pattern: an ENI detached from one instance and
// attached to another.
//
// Nothing is created in the namespace the caller runs in: links are
// created through netlink handles bound to the simulator's namespaces and
// commands run on locked threads switched into them. The simulator needs
// only the kernel: nftables rules, bridge port state and ICMP echo go
// through netlink and sockets, and programs run in a namespace without
// `ip netns exec` (see exec.go); no nft, ip, bridge or ping binary is used.
package vpcsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/imds/fakeimds"
	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// IMDSAddr is where the fake IMDS listens inside the router namespace.
var IMDSAddr = netip.MustParseAddr("169.254.169.254")

// GatewayLinkLocal is the IPv6 gateway every subnet bridge holds, as on EC2.
var GatewayLinkLocal = netip.MustParseAddr("fe80:ec2::1")

// Default addresses of the remote host and of the router's link to it.
var (
	DefaultRemoteIPv4 = netip.MustParseAddr("100.127.0.10")
	DefaultRemoteIPv6 = netip.MustParseAddr("2001:db8:ffff::10")
	routerUplinkIPv4  = netip.MustParsePrefix("100.127.0.1/24")
	routerUplinkIPv6  = netip.MustParsePrefix("2001:db8:ffff::1/64")
)

// routerIndexBase numbers the router's veth ends (uplink, then ENI ports)
// far above the interface indexes their peers get in the other
// namespaces. Linkwatch handles a link's carrier change at once when the
// link's index differs from its peer's (iflink) and otherwise may batch
// it for up to a second; distinct indexes keep the router's ends out of
// that batch. (A precaution: the waits below are what make readiness
// certain.)
const routerIndexBase = 1000

// EchoPort is the TCP port of the remote host's echo listener.
const EchoPort = 7777

// Options configure New.
type Options struct {
	// Prefix starts every namespace name (default "vpcsim"); names are made
	// unique per process and call with nsutil.UniqueName.
	Prefix string
	// Logf receives one line per notable step (t.Logf in tests); optional.
	Logf func(format string, args ...any)
	// NoDAD sets accept_dad=0 in the instance (all and default) before any
	// ENI exists, so IPv6 addresses are usable at once instead of after
	// ~2 s of duplicate address detection. The kernel default (DAD on, as
	// on EC2) is kept when false.
	NoDAD bool
}

// VPC is one simulated VPC, with one instance (New) or more (AddInstance).
// The VPC's ENI and probe methods act on the instance New created; each
// Instance has the same methods for itself. Methods are safe for
// concurrent use.
type VPC struct {
	// Namespace names (/run/netns/<name>); Instance is the first instance.
	Instance, Router, Remote string
	// IMDS is the first instance's metadata. It serves at
	// 169.254.169.254:80 inside Router; the instance reaches it through its
	// primary ENI's default route, as on EC2.
	IMDS *fakeimds.Server
	// The remote host's addresses (outside the VPC, behind the router).
	RemoteIPv4, RemoteIPv6 netip.Addr

	logf func(string, ...any)

	mu        sync.Mutex
	closed    bool
	base      string
	noDAD     bool
	handles   map[string]netns.NsHandle // by namespace name
	router    *netlink.Handle
	def       *Instance   // the instance New created
	instances []*Instance // def first
	subnets   []*subnet
	enis      map[string]*eni // by lowercase MAC
	nextPort  int
	vpcIPv4   []netip.Prefix
	vpcIPv6   []netip.Prefix
	echo      *echoServer
	container *dockerLike
	timers    []*time.Timer // pending IMDS lags of Move
}

func (o Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// New creates the instance, router and remote namespaces, links and
// routes the router to the remote host, starts the remote's echo listener,
// the nftables tables and the fake IMDS. On error everything created so
// far is removed.
func New(o Options) (v *VPC, err error) {
	start := time.Now()
	if o.Prefix == "" {
		o.Prefix = "vpcsim"
	}
	sweepStale(o.Prefix, o.logf)
	base := nsutil.UniqueName(o.Prefix)
	v = &VPC{
		Instance:   base + "-i",
		Router:     base + "-r",
		Remote:     base + "-h",
		RemoteIPv4: DefaultRemoteIPv4,
		RemoteIPv6: DefaultRemoteIPv6,
		logf:       o.logf,
		base:       base,
		noDAD:      o.NoDAD,
		handles:    map[string]netns.NsHandle{},
		enis:       map[string]*eni{},
		nextPort:   1,
	}
	defer func() {
		if err != nil {
			if cerr := v.Close(); cerr != nil {
				err = fmt.Errorf("%w (and cleanup: %v)", err, cerr)
			}
			v = nil
		}
	}()
	for _, name := range []string{v.Router, v.Remote} {
		h, err := nsutil.NewNamed(name)
		if err != nil {
			return v, fmt.Errorf("vpcsim: create namespace %s: %w", name, err)
		}
		v.handles[name] = h
	}
	if v.router, err = netlink.NewHandleAt(v.handles[v.Router]); err != nil {
		return v, fmt.Errorf("vpcsim: netlink in router: %w", err)
	}
	if v.def, err = v.newInstanceLocked(v.Instance, 0); err != nil {
		return v, err
	}
	if err := v.setSysctls(); err != nil {
		return v, err
	}
	if err := v.setupRemote(); err != nil {
		return v, err
	}
	if err := installRouterRuleset(v.handles[v.Router]); err != nil {
		return v, fmt.Errorf("vpcsim: router nftables: %w", err)
	}
	if err := v.startIMDSLocked(v.def); err != nil {
		return v, err
	}
	v.IMDS = v.def.IMDS
	echo, err := startEcho(v.handles[v.Remote], EchoPort)
	if err != nil {
		return v, fmt.Errorf("vpcsim: remote echo listener: %w", err)
	}
	v.echo = echo
	v.logf("vpcsim: bed %s up in %v (instance %s, router %s, remote %s)", base, time.Since(start).Round(time.Millisecond), v.Instance, v.Router, v.Remote)
	return v, nil
}

// NewForTest creates a VPC for t (skipping or, under CI, failing when not
// root) and closes it when the test ends.
func NewForTest(t testing.TB, prefix string) *VPC {
	t.Helper()
	return NewForTestOptions(t, Options{Prefix: prefix})
}

// NewForTestOptions is NewForTest with options; Logf defaults to t.Logf.
func NewForTestOptions(t testing.TB, o Options) *VPC {
	t.Helper()
	nsutil.RequireRoot(t)
	if o.Logf == nil {
		o.Logf = t.Logf
	}
	v, err := New(o)
	if err != nil {
		t.Fatalf("vpcsim: %v", err)
	}
	t.Cleanup(func() {
		if err := v.Close(); err != nil {
			t.Errorf("vpcsim close: %v", err)
		}
	})
	return v
}

// Close stops the listeners and the IMDS and deletes every namespace the
// VPC created. It is idempotent and works after a partial New.
func (v *VPC) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil
	}
	v.closed = true
	start := time.Now()
	var errs []error
	// Sockets hold their namespace alive: close them before the names go.
	if v.echo != nil {
		v.echo.close()
	}
	if v.container != nil {
		v.container.close()
	}
	for _, t := range v.timers {
		t.Stop()
	}
	for _, i := range v.instances {
		if i.IMDS != nil {
			if err := i.IMDS.Close(); err != nil {
				errs = append(errs, fmt.Errorf("stop IMDS of %s: %w", i.Name, err))
			}
		}
		if i.nl != nil {
			i.nl.Close()
		}
	}
	if v.router != nil {
		v.router.Close()
	}
	for name, h := range v.handles {
		h.Close()
		if err := nsutil.DeleteNamed(name); err != nil {
			errs = append(errs, fmt.Errorf("delete namespace %s: %w", name, err))
		}
	}
	v.handles = map[string]netns.NsHandle{}
	v.logf("vpcsim: bed %s removed in %v", v.base, time.Since(start).Round(time.Millisecond))
	return errors.Join(errs...)
}

// Namespaces lists the names of every namespace the VPC currently holds.
func (v *VPC) Namespaces() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]string, 0, len(v.handles))
	for name := range v.handles {
		out = append(out, name)
	}
	return out
}

// Handle returns the namespace handle of one of the VPC's namespaces. The
// handle stays owned by the VPC: do not close it.
func (v *VPC) Handle(ns string) (netns.NsHandle, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.handleLocked(ns)
}

func (v *VPC) handleLocked(ns string) (netns.NsHandle, error) {
	if v.closed {
		return netns.None(), errors.New("vpcsim: closed")
	}
	h, ok := v.handles[ns]
	if !ok {
		return netns.None(), fmt.Errorf("vpcsim: %q is not one of this VPC's namespaces", ns)
	}
	return h, nil
}

// Sysctl writes /proc/sys/<key> inside namespace ns. key may use dots
// (net.ipv4.conf.all.rp_filter) or slashes; with dots, a link name that
// contains dots must be written with slashes instead.
func (v *VPC) Sysctl(ns, key, value string) error {
	h, err := v.Handle(ns)
	if err != nil {
		return err
	}
	return sysctl(h, key, value)
}

func sysctl(h netns.NsHandle, key, value string) error {
	path := key
	if !strings.Contains(path, "/") {
		path = strings.ReplaceAll(path, ".", "/")
	}
	path = filepath.Join("/proc/sys", path)
	// /proc/sys/net resolves to the namespace of the thread that opens it.
	return nsutil.Do(h, func() error {
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("vpcsim: sysctl %s=%s: %w", key, value, err)
		}
		return nil
	})
}

// commonSysctls are set in every namespace: new namespaces inherit IPv4
// settings from the root namespace, so everything the simulation depends
// on is set explicitly.
var commonSysctls = [][2]string{
	{"net.ipv4.conf.all.rp_filter", "0"},
	{"net.ipv4.conf.default.rp_filter", "0"},
	{"net.ipv4.conf.all.arp_ignore", "0"},
	{"net.ipv4.conf.default.arp_ignore", "0"},
	{"net.ipv4.conf.all.arp_announce", "0"},
	{"net.ipv4.conf.default.arp_announce", "0"},
	{"net.ipv6.conf.all.disable_ipv6", "0"},
	{"net.ipv6.conf.default.disable_ipv6", "0"},
}

// instanceSysctls are an instance's settings (see Options.NoDAD).
func instanceSysctls(noDAD bool) [][2]string {
	instance := append([][2]string{
		{"net.ipv4.ip_forward", "0"},
		{"net.ipv6.conf.all.forwarding", "0"},
		// The simulated VPC sends no router advertisements; the primary's
		// IPv6 default route is installed as a DHCP/RA client would.
		{"net.ipv6.conf.default.accept_ra", "0"},
	}, commonSysctls...)
	if noDAD {
		instance = append(instance,
			[2]string{"net.ipv6.conf.all.accept_dad", "0"},
			[2]string{"net.ipv6.conf.default.accept_dad", "0"})
	}
	return instance
}

// setSysctls sets the router's and the remote's (instances set theirs
// when created).
func (v *VPC) setSysctls() error {
	router := append([][2]string{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv6.conf.all.forwarding", "1"},
		{"net.ipv6.conf.default.forwarding", "1"},
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
	}, commonSysctls...)
	remote := append([][2]string{
		{"net.ipv4.ip_forward", "0"},
		{"net.ipv6.conf.all.forwarding", "0"},
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
	}, commonSysctls...)
	for _, set := range []struct {
		ns   string
		keys [][2]string
	}{{v.Router, router}, {v.Remote, remote}} {
		for _, kv := range set.keys {
			if err := sysctl(v.handles[set.ns], kv[0], kv[1]); err != nil {
				return fmt.Errorf("%s: %w", set.ns, err)
			}
		}
	}
	return nil
}

// setupRemote links the router to the remote host: a veth "uplink" in the
// router, "eth0" in Remote, with the remote's default routes via the
// router.
func (v *VPC) setupRemote() error {
	remoteNS := v.handles[v.Remote]
	uplink := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "uplink", Index: routerIndexBase},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(remoteNS)),
	}
	if err := v.router.LinkAdd(uplink); err != nil {
		return fmt.Errorf("vpcsim: create remote link: %w", err)
	}
	if err := addAddrs(v.router, "uplink", routerUplinkIPv4, routerUplinkIPv6); err != nil {
		return err
	}
	if err := fastNeighRetrans(v.handles[v.Router], "uplink"); err != nil {
		return err
	}
	if err := fastNeighRetrans(remoteNS, "eth0"); err != nil {
		return err
	}
	if err := linkUp(v.router, "uplink"); err != nil {
		return err
	}
	remote, err := netlink.NewHandleAt(remoteNS)
	if err != nil {
		return fmt.Errorf("vpcsim: netlink in remote: %w", err)
	}
	defer remote.Close()
	if err := addAddrs(remote, "eth0",
		netip.PrefixFrom(v.RemoteIPv4, routerUplinkIPv4.Bits()),
		netip.PrefixFrom(v.RemoteIPv6, routerUplinkIPv6.Bits())); err != nil {
		return err
	}
	if err := linkUp(remote, "eth0"); err != nil {
		return err
	}
	link, err := remote.LinkByName("eth0")
	if err != nil {
		return err
	}
	for _, gw := range []netip.Addr{routerUplinkIPv4.Addr(), routerUplinkIPv6.Addr()} {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.IP(gw.AsSlice())}
		if gw.Is4() {
			r.Dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
		} else {
			r.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		if err := remote.RouteReplace(r); err != nil {
			return fmt.Errorf("vpcsim: remote default route via %s: %w", gw, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), linkReadyTimeout)
	defer cancel()
	if err := waitOperUp(ctx, v.router, "uplink"); err != nil {
		return err
	}
	return waitOperUp(ctx, remote, "eth0")
}

// fastNeighRetrans shortens the neighbour solicitation retry of one link
// from a second to 100 ms. A veth's carrier reaches the bridge port and
// IPv6 addrconf through the kernel's linkwatch work, which on a busy
// machine lags behind "link up" by up to hundreds of milliseconds; the
// first ARP request or solicitation sent meanwhile is lost, and with the
// default retry a probe of a freshly configured link would time out. (New
// namespaces have no neigh/default sysctls: it is set per link.)
func fastNeighRetrans(h netns.NsHandle, link string) error {
	for _, fam := range []string{"ipv4", "ipv6"} {
		if err := sysctl(h, "net/"+fam+"/neigh/"+link+"/retrans_time_ms", "100"); err != nil {
			return err
		}
	}
	return nil
}

// linkReadyTimeout bounds waiting for the kernel to report a link usable.
const linkReadyTimeout = 5 * time.Second

// waitOperUp polls until the link's operational state is up: only then
// have the bridge (for a port) and IPv6 addrconf seen its carrier.
func waitOperUp(ctx context.Context, h *netlink.Handle, name string) error {
	for {
		l, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("vpcsim: link %s: %w", name, err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vpcsim: link %s not operational (state %s): %w", name, l.Attrs().OperState, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// waitPortForwarding polls until the bridge port in namespace h forwards
// frames (its STP state, read through netlink).
func waitPortForwarding(ctx context.Context, h netns.NsHandle, nl *netlink.Handle, port string) error {
	l, err := nl.LinkByName(port)
	if err != nil {
		return fmt.Errorf("vpcsim: bridge port %s: %w", port, err)
	}
	for {
		state, err := bridgePortState(h, l.Attrs().Index)
		if err == nil && state == brStateForwarding {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vpcsim: bridge port %s not forwarding (state %d, %v): %w", port, state, err, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// sweepStale deletes namespaces that an earlier, dead process created with
// the same prefix (names "<prefix>-<pid>-<seq>-<role>"), so crashed runs do
// not accumulate.
func sweepStale(prefix string, logf func(string, ...any)) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix+"-")
		if !ok {
			continue
		}
		parts := strings.Split(rest, "-")
		// Roles: i, r, h, c, and i2, i3, ... for added instances.
		if len(parts) != 3 || len(parts[2]) < 1 || len(parts[2]) > 3 {
			continue
		}
		pid, err := strconv.Atoi(parts[0])
		if err != nil || pid <= 0 {
			continue
		}
		if _, err := strconv.Atoi(parts[1]); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
			continue // its owner is alive
		}
		if err := nsutil.DeleteNamed(e.Name()); err == nil {
			logf("vpcsim: removed stale namespace %s", e.Name())
		} else if os.Remove(filepath.Join("/run/netns", e.Name())) == nil {
			// Not a mount point: the namespace was mounted in a mount
			// namespace that is gone (a test that hid tools), only the
			// file was left. (Removing a mounted file fails: EBUSY.)
			logf("vpcsim: removed stale namespace file %s", e.Name())
		}
	}
}

func linkUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("vpcsim: link %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("vpcsim: set %s up: %w", name, err)
	}
	return nil
}

// addAddrs adds addresses to a link; IPv6 ones without duplicate address
// detection (the simulator's own addresses must work at once).
func addAddrs(h *netlink.Handle, name string, prefixes ...netip.Prefix) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("vpcsim: link %s: %w", name, err)
	}
	for _, p := range prefixes {
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			a.Flags = nodadFlag
		}
		if err := h.AddrReplace(l, a); err != nil {
			return fmt.Errorf("vpcsim: add %s to %s: %w", p, name, err)
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func hostPrefix(a netip.Addr) netip.Prefix {
	return netip.PrefixFrom(a, a.BitLen())
}
