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
	"errors"
	"fmt"
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
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
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
func New(o Options) (*VPC, error) {
	start := time.Now()
	if o.Prefix == "" {
		o.Prefix = "vpcsim"
	}
	sweepStale(o.Prefix, o.logf)
	v := newVPC(nsutil.UniqueName(o.Prefix), o)
	if err := v.build(); err != nil {
		if cerr := v.Close(); cerr != nil {
			err = fmt.Errorf("%w (and cleanup: %v)", err, cerr)
		}
		return nil, err
	}
	v.logf("vpcsim: bed %s up in %v (instance %s, router %s, remote %s)", v.base, time.Since(start).Round(time.Millisecond), v.Instance, v.Router, v.Remote)
	return v, nil
}

// newVPC returns the record of a VPC whose namespaces are named after
// base; nothing exists yet.
func newVPC(base string, o Options) *VPC {
	return &VPC{
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
}

// build creates what New promises, in order; on error New closes the VPC,
// which removes whatever build created so far.
func (v *VPC) build() (err error) {
	for _, name := range []string{v.Router, v.Remote} {
		h, err := nsutil.NewNamed(name)
		if err != nil {
			return fmt.Errorf("vpcsim: create namespace %s: %w", name, err)
		}
		v.handles[name] = h
	}
	if v.router, err = netlink.NewHandleAt(v.handles[v.Router]); err != nil {
		return fmt.Errorf("vpcsim: netlink in router: %w", err)
	}
	if v.def, err = v.newInstanceLocked(v.Instance, 0); err != nil {
		return err
	}
	if err := v.setSysctls(); err != nil {
		return err
	}
	if err := v.setupRemote(); err != nil {
		return err
	}
	if err := installRouterRuleset(v.handles[v.Router]); err != nil {
		return fmt.Errorf("vpcsim: router nftables: %w", err)
	}
	if err := v.startIMDSLocked(v.def); err != nil {
		return err
	}
	v.IMDS = v.def.IMDS
	if v.echo, err = startEcho(v.handles[v.Remote], EchoPort); err != nil {
		return fmt.Errorf("vpcsim: remote echo listener: %w", err)
	}
	return nil
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
	nstest.RequireRoot(t)
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
