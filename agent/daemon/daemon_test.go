package daemon

// End-to-end tests of `ec2net run` in a simulated VPC. The daemon runs in
// this test process (so goleak can see its goroutines): its netlink work
// is bound to the instance namespace through handles, and it reads the fake
// IMDS over loopback (the same server the instance sees at
// 169.254.169.254). Traffic is probed from inside the instance namespace
// through the router that enforces the source/destination check.

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/agent/imds/fakeimds"
	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/ec2net/ec2net/netconf"
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
)

var (
	subnetA  = netip.MustParsePrefix("100.64.1.0/24")
	subnetA6 = netip.MustParsePrefix("2001:db8:0:1::/64")
	subnetB  = netip.MustParsePrefix("100.64.2.0/24")
	subnetB6 = netip.MustParsePrefix("2001:db8:0:2::/64")
)

// harness is a simulated VPC with a running daemon.
type harness struct {
	t       testing.TB
	vpc     *vpcsim.VPC
	ns      netns.NsHandle
	nl      *netlink.Handle
	client  *imds.Client
	cancel  context.CancelFunc
	done    chan error
	sigs    chan os.Signal
	mu      sync.Mutex
	notices []string
}

var eth1 = vpcsim.ENISpec{Name: "eth1", MAC: "02:ec:20:00:02:01", ID: "eni-0d0000000000000201", Device: 1,
	SubnetIPv4: subnetB, SubnetIPv6: subnetB6,
	IPv4: vpcsim.Addrs("100.64.2.10", "100.64.2.11", "100.64.2.12"), IPv6: vpcsim.Addrs("2001:db8:0:2::10", "2001:db8:0:2::11")}

func startHarness(t testing.TB, prefix string, mutate func(*config.Config)) *harness {
	t.Helper()
	return startDaemon(t, newVPC(t, prefix), mutate)
}

func startHarnessWith(t testing.TB, prefix string, mutate func(*config.Config), opts func(*Options)) *harness {
	t.Helper()
	return startDaemonWith(t, newVPC(t, prefix), mutate, opts)
}

// newVPC is a simulated instance with two subnets and its primary ENI.
func newVPC(t testing.TB, prefix string) *vpcsim.VPC {
	t.Helper()
	nstest.RequireRoot(t)
	vpc := vpcsim.NewForTest(t, prefix)
	must(t, vpc.AddSubnet(subnetA, subnetA6))
	must(t, vpc.AddSubnet(subnetB, subnetB6))
	must(t, vpc.LaunchPrimary(vpcsim.ENISpec{Name: "eth0", MAC: "02:ec:20:00:02:00", ID: "eni-0d0000000000000200",
		SubnetIPv4: subnetA, IPv4: vpcsim.Addrs("100.64.1.10", "100.64.1.11")}))
	return vpc
}

func startDaemon(t testing.TB, vpc *vpcsim.VPC, mutate func(*config.Config)) *harness {
	t.Helper()
	return startDaemonWith(t, vpc, mutate, nil)
}

func startDaemonWith(t testing.TB, vpc *vpcsim.VPC, mutate func(*config.Config), opts func(*Options)) *harness {
	t.Helper()
	endpoint, err := vpc.IMDS.Start("127.0.0.1:0")
	must(t, err)
	ns, err := netns.GetFromName(vpc.Instance)
	must(t, err)
	t.Cleanup(func() { ns.Close() })
	nlh, err := netlink.NewHandleAt(ns)
	must(t, err)
	t.Cleanup(nlh.Close)

	cfg := config.Default()
	cfg.RefreshInterval = 2 * time.Second
	cfg.ReadyTimeout = 10 * time.Second
	cfg.RemoveAfterTime = time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	client, err := imds.New(imds.Options{Endpoint: endpoint, Version: "test",
		Attempts: 2, RequestTimeout: 300 * time.Millisecond,
		Backoff: imds.BackoffConfig{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Jitter: 0.2}})
	must(t, err)
	log := zaptest.NewLogger(t)
	rec, err := netconf.New(netconf.Options{NetNS: ns, StateDir: t.TempDir(), Logger: log.Named("netconf")})
	must(t, err)
	t.Cleanup(func() { rec.Close() })

	h := &harness{t: t, vpc: vpc, ns: ns, nl: nlh, client: client, done: make(chan error, 1), sigs: make(chan os.Signal, 1)}
	h.run(Options{Config: cfg, Logger: log, IMDS: client, Reconciler: rec, NetNS: ns, Version: "test"}, opts, vpc.Instance)
	return h
}

// run starts the daemon with o (changed by opts) and returns once it is
// READY; it is stopped when the test ends.
func (h *harness) run(o Options, opts func(*Options), name string) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	ready := make(chan struct{})
	o.Signals, o.Ready, o.Notify = h.sigs, ready, h.notify
	if opts != nil {
		opts(&o)
	}
	go func() { h.done <- Run(ctx, o) }()
	h.t.Cleanup(h.stop)
	select {
	case <-ready:
	case err := <-h.done:
		h.t.Fatalf("daemon in %s exited before READY: %v", name, err)
	case <-time.After(20 * time.Second):
		h.t.Fatalf("daemon in %s: no READY within 20s", name)
	}
}

func (h *harness) notify(s string) {
	h.mu.Lock()
	h.notices = append(h.notices, s)
	h.mu.Unlock()
}

// stop cancels the daemon and waits for Run to return (SIGTERM semantics).
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Errorf("daemon did not stop within 10s of SIGTERM")
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v: %v", what, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// probeTimeout bounds one probe. A working path answers in about a
// millisecond; the margin is for a CI machine loaded by parallel packages
// (a false failure, not a false pass, is what a short timeout risks).
const probeTimeout = 3 * time.Second

func (h *harness) probeOut(a netip.Addr) error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	res, err := h.vpc.ProbeTCP(ctx, a)
	if err != nil {
		return err
	}
	if res.SeenSource != a {
		return fmt.Errorf("remote saw %s, want %s", res.SeenSource, a)
	}
	return nil
}

func (h *harness) probeBoth(a netip.Addr) error {
	if err := h.probeOut(a); err != nil {
		return fmt.Errorf("outbound from %s: %w", a, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if _, err := h.vpc.ProbeInbound(ctx, a); err != nil {
		return fmt.Errorf("inbound to %s: %w", a, err)
	}
	return nil
}

func (h *harness) allPass(addrs []netip.Addr) func() error {
	return func() error {
		for _, a := range addrs {
			if err := h.probeBoth(a); err != nil {
				return err
			}
		}
		return nil
	}
}

// ownedRules returns the rules with ec2net's protocol, as "pref table src".
func (h *harness) ownedRules() []string {
	var out []string
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rules, err := h.nl.RuleList(fam)
		must(h.t, err)
		for _, r := range rules {
			if r.Protocol == netconf.Protocol {
				out = append(out, fmt.Sprintf("%d %d %v", r.Priority, r.Table, r.Src))
			}
		}
	}
	return out
}

func (h *harness) ownedRoutes() []string {
	var out []string
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		routes, err := h.nl.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		must(h.t, err)
		for _, r := range routes {
			if int(r.Protocol) == netconf.Protocol {
				out = append(out, fmt.Sprintf("table %d %v", r.Table, r.Dst))
			}
		}
	}
	return out
}

func tableRules(rules []string, table int) int {
	n := 0
	for _, r := range rules {
		var pref, tbl int
		fmt.Sscanf(r, "%d %d", &pref, &tbl)
		if tbl == table {
			n++
		}
	}
	return n
}

func allAddrs(s vpcsim.ENISpec) []netip.Addr {
	return append(append([]netip.Addr{}, s.IPv4...), s.IPv6...)
}

func TestHotAttachCarriesTrafficBothWays(t *testing.T) {
	h := startHarness(t, "dmhot", nil)
	must(t, h.vpc.Attach(eth1))
	eventually(t, 10*time.Second, "every address of the hot-attached ENI carries traffic", h.allPass(allAddrs(eth1)))
	if err := h.probeBoth(netip.MustParseAddr("100.64.1.11")); err != nil {
		t.Errorf("primary's secondary address: %v", err)
	}
}

func TestPropagationDelayNeverPointsARuleAtTable10000(t *testing.T) {
	h := startHarness(t, "dmprop", nil)
	h.vpc.IMDS.SetPropagation(2*time.Second, "subnet-ipv4-cidr-block", "subnet-ipv6-cidr-blocks")
	spec := eth1
	spec.Device = 3
	must(t, h.vpc.Attach(spec))
	// While IMDS says device-number 0, nothing may point at table 10000.
	eventually(t, 15*time.Second, "ENI configured in table 10003", func() error {
		rules := h.ownedRules()
		if n := tableRules(rules, 10000); n != 0 {
			t.Fatalf("a rule points at table 10000 during propagation: %v", rules)
		}
		if n := tableRules(rules, 10003); n != len(allAddrs(spec)) {
			return fmt.Errorf("%d rules for table 10003, want %d", n, len(allAddrs(spec)))
		}
		return nil
	})
	eventually(t, 5*time.Second, "traffic after propagation", h.allPass(allAddrs(spec)))
}

func TestDetachRemovesRulesAndReattachUnderNewNameConfiguresAgain(t *testing.T) {
	h := startHarness(t, "dmdet", nil)
	must(t, h.vpc.Attach(eth1))
	eventually(t, 10*time.Second, "configured", h.allPass(allAddrs(eth1)))

	must(t, h.vpc.Detach(eth1.MAC))
	eventually(t, 5*time.Second, "rules and routes of the detached ENI gone", func() error {
		if r := h.ownedRules(); tableRules(r, 10001) != 0 {
			return fmt.Errorf("rules left: %v", r)
		}
		for _, r := range h.ownedRoutes() {
			if strings.HasPrefix(r, "table 10001 ") {
				return fmt.Errorf("route left: %s", r)
			}
		}
		return nil
	})

	again := eth1
	again.Name = "ens6"
	must(t, h.vpc.Attach(again))
	eventually(t, 10*time.Second, "re-attached ENI configured under its new name", h.allPass(allAddrs(again)))
}

func TestRenameKeepsTheENIConfigured(t *testing.T) {
	h := startHarness(t, "dmren", nil)
	must(t, h.vpc.Attach(eth1))
	eventually(t, 10*time.Second, "configured", h.allPass(allAddrs(eth1)))
	must(t, h.vpc.Rename(eth1.MAC, "enp0s6"))
	eventually(t, 10*time.Second, "still configured after a udev rename", h.allPass(allAddrs(eth1)))
}

func TestAssignAndUnassignWithinOneRefresh(t *testing.T) {
	h := startHarness(t, "dmasg", func(c *config.Config) { c.RefreshInterval = 2 * time.Second })
	must(t, h.vpc.Attach(eth1))
	eventually(t, 10*time.Second, "configured", h.allPass(allAddrs(eth1)))

	new4 := netip.MustParseAddr("100.64.2.20")
	new6 := netip.MustParseAddr("2001:db8:0:2::20")
	pfx := netip.MustParsePrefix("100.64.2.48/28")
	must(t, h.vpc.AssignIPv4(eth1.MAC, new4))
	must(t, h.vpc.AssignIPv6(eth1.MAC, new6))
	must(t, h.vpc.AssignPrefix(eth1.MAC, pfx))
	eventually(t, 2*2*time.Second+time.Second, "assigned addresses carry traffic", h.allPass([]netip.Addr{new4, new6}))
	eventually(t, 5*time.Second, "prefix rule present", func() error {
		for _, r := range h.ownedRules() {
			if strings.HasSuffix(r, " "+pfx.String()) {
				return nil
			}
		}
		return fmt.Errorf("no rule from %s: %v", pfx, h.ownedRules())
	})

	must(t, h.vpc.UnassignIPv4(eth1.MAC, new4))
	must(t, h.vpc.UnassignIPv6(eth1.MAC, new6))
	must(t, h.vpc.UnassignPrefix(eth1.MAC, pfx))
	// Removal needs two successful reads that no longer list them.
	eventually(t, 2*2*time.Second+time.Second+2*time.Second, "unassigned addresses and prefix removed", func() error {
		for _, r := range h.ownedRules() {
			if strings.Contains(r, new4.String()) || strings.Contains(r, new6.String()) || strings.Contains(r, pfx.String()) {
				return fmt.Errorf("rule left: %s", r)
			}
		}
		link, err := h.nl.LinkByName("eth1")
		if err != nil {
			return err
		}
		addrs, err := h.nl.AddrList(link, unix.AF_UNSPEC)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if ip, _ := netip.AddrFromSlice(a.IP); ip.Unmap() == new4 || ip == new6 {
				return fmt.Errorf("address %s still on eth1", ip)
			}
		}
		return nil
	})
	if err := h.allPass(allAddrs(eth1))(); err != nil {
		t.Errorf("the other addresses stopped working: %v", err)
	}
}

// An IMDS outage of 30 s cycling through every failure mode, with probes
// from every address every second: zero failures, nothing removed; an
// address assigned during the outage is applied after it.
func TestIMDSOutageRemovesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s outage; not in -short")
	}
	h := startHarness(t, "dmout", func(c *config.Config) { c.RefreshInterval = time.Second })
	must(t, h.vpc.Attach(eth1))
	addrs := append(allAddrs(eth1), netip.MustParseAddr("100.64.1.11"))
	eventually(t, 10*time.Second, "configured", h.allPass(addrs))
	rulesBefore := len(h.ownedRules())

	late := netip.MustParseAddr("100.64.2.30")
	// Five global failure modes, then a 404 on one ENI's address list only
	// (the read that, taken at face value, says "no IPv4 addresses").
	type phase struct {
		path  string
		fault fakeimds.FaultKind
	}
	phases := []phase{{"", fakeimds.Fault500}, {"", fakeimds.FaultHang}, {"", fakeimds.FaultGarbage},
		{"", fakeimds.Fault404}, {"", fakeimds.Fault429},
		{"network/interfaces/macs/" + eth1.MAC + "/local-ipv4s", fakeimds.Fault404}}
	const each = 5 * time.Second
	start := time.Now()
	failed := 0
	current := -1
	for time.Since(start) < time.Duration(len(phases))*each {
		if p := int(time.Since(start) / each); p != current {
			current = p
			h.vpc.IMDS.ClearFaults()
			h.vpc.IMDS.SetFault(phases[p].path, fakeimds.Fault{Kind: phases[p].fault, Token: p%2 == 0 && phases[p].path == ""})
			t.Logf("outage phase %d: %v on %q", p, phases[p].fault, phases[p].path)
			if p == 2 {
				must(t, h.vpc.AssignIPv4(eth1.MAC, late))
			}
		}
		tick := time.Now()
		for _, a := range addrs {
			if err := h.probeBoth(a); err != nil {
				failed++
				t.Errorf("probe failed during outage phase %d: %v", current, err)
			}
		}
		if n := len(h.ownedRules()); n < rulesBefore {
			t.Fatalf("rules removed during the outage (phase %d): %d -> %d", current, rulesBefore, n)
		}
		if d := time.Second - time.Since(tick); d > 0 {
			time.Sleep(d) // probe cadence, not synchronisation
		}
	}
	h.vpc.IMDS.ClearFaults()
	if failed != 0 {
		t.Fatalf("%d failed probes during the outage", failed)
	}
	eventually(t, 10*time.Second, "address assigned during the outage applied after it", h.allPass([]netip.Addr{late}))
}

func TestOwnedRuleDeletedByHandIsRestored(t *testing.T) {
	h := startHarness(t, "dmrep", func(c *config.Config) { c.RefreshInterval = time.Hour })
	must(t, h.vpc.Attach(eth1))
	eventually(t, 10*time.Second, "configured", h.allPass(allAddrs(eth1)))
	victim := &netlink.Rule{}
	rules, err := h.nl.RuleList(unix.AF_INET)
	must(t, err)
	for i := range rules {
		if rules[i].Protocol == netconf.Protocol && rules[i].Table == 10001 {
			victim = &rules[i]
			break
		}
	}
	if victim.Table != 10001 {
		t.Fatalf("no owned rule for table 10001: %v", h.ownedRules())
	}
	before := len(h.ownedRules())
	must(t, h.nl.RuleDel(victim))
	// Refresh is an hour away: only the event-driven repair can restore it.
	eventually(t, 5*time.Second, "deleted rule restored", func() error {
		if n := len(h.ownedRules()); n != before {
			return fmt.Errorf("%d owned rules, want %d", n, before)
		}
		return nil
	})
}

func TestRapidAttachDetachLeaksNothing(t *testing.T) {
	vpc := newVPC(t, "dmchurn")
	ignore := goleak.IgnoreCurrent()
	fdsBefore := countFDs(t)
	func() {
		h := startDaemon(t, vpc, nil)
		for i := 0; i < 50; i++ {
			must(t, h.vpc.Attach(eth1))
			must(t, h.vpc.Detach(eth1.MAC))
		}
		must(t, h.vpc.Attach(eth1))
		eventually(t, 15*time.Second, "final attach configured", h.allPass(allAddrs(eth1)))
		eventually(t, 5*time.Second, "no leaked rules or routes", func() error {
			rules := h.ownedRules()
			if len(rules) != len(allAddrs(eth1)) {
				return fmt.Errorf("%d owned rules, want %d: %v", len(rules), len(allAddrs(eth1)), rules)
			}
			for _, r := range h.ownedRoutes() {
				if !strings.HasPrefix(r, "table 10001 ") {
					return fmt.Errorf("unexpected owned route %s", r)
				}
			}
			return nil
		})
		h.stop()
		h.client = nil
	}()
	// HTTP keep-alive connections between the IMDS client and the fake
	// server (and the loopback listener the harness added) outlive the
	// daemon by design; everything else must be gone.
	goleak.VerifyNone(t, ignore,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*conn).serve"),
		goleak.IgnoreAnyFunction("net/http.(*Server).Serve"))
	// Descriptors: the harness's netns and netlink handles plus a few
	// keep-alive connections; a leak per cycle would show as 50+.
	if after := countFDs(t); after > fdsBefore+20 {
		t.Errorf("file descriptors grew from %d to %d", fdsBefore, after)
	}
}

func TestSIGHUPRefreshesNow(t *testing.T) {
	h := startHarness(t, "dmhup", func(c *config.Config) { c.RefreshInterval = time.Hour })
	must(t, h.vpc.Attach(eth1))
	eventually(t, 10*time.Second, "configured", h.allPass(allAddrs(eth1)))
	extra := netip.MustParseAddr("100.64.2.40")
	must(t, h.vpc.AssignIPv4(eth1.MAC, extra))
	h.sigs <- unix.SIGHUP
	eventually(t, 5*time.Second, "SIGHUP applied the new address", h.allPass([]netip.Addr{extra}))
}

func TestReadyIsBoundedWhenIMDSIsDead(t *testing.T) {
	nstest.RequireRoot(t)
	vpc := vpcsim.NewForTest(t, "dmdead")
	must(t, vpc.AddSubnet(subnetA, subnetA6))
	must(t, vpc.LaunchPrimary(vpcsim.ENISpec{Name: "eth0", MAC: "02:ec:20:00:02:00", ID: "eni-0d0000000000000200",
		SubnetIPv4: subnetA, IPv4: vpcsim.Addrs("100.64.1.10")}))
	vpc.IMDS.SetFault("", fakeimds.Fault{Kind: fakeimds.FaultHang, Token: true})
	start := time.Now()
	h := startDaemon(t, vpc, func(c *config.Config) { c.ReadyTimeout = time.Second })
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("READY after %v with a dead IMDS", d)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	found := false
	for _, n := range h.notices {
		if strings.HasPrefix(n, "READY=1") && strings.Contains(n, "degraded") {
			found = true
		}
	}
	if !found {
		t.Errorf("READY did not say degraded: %q", h.notices)
	}
}

func countFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	return len(ents)
}

// If the netlink socket fails (ENOBUFS after an event storm, say), events
// may have been lost: the daemon subscribes again and re-reads, instead of
// exiting or carrying on deaf.
func TestFailedSubscriptionIsReplaced(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	var first *netconf.Watcher
	h := startHarnessWith(t, "dmsub", func(c *config.Config) { c.RefreshInterval = time.Hour }, func(o *Options) {
		o.Watch = func() (Events, error) {
			w, err := netconf.Watch(o.NetNS)
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls == 1 {
				first = w
			}
			return w, err
		}
	})
	// The first subscription ends (as an overrun would end it).
	mu.Lock()
	first.Close()
	mu.Unlock()
	eventually(t, 5*time.Second, "resubscribed", func() error {
		mu.Lock()
		defer mu.Unlock()
		if calls < 2 {
			return fmt.Errorf("%d subscriptions", calls)
		}
		return nil
	})
	// Refresh is an hour away: only the new subscription can see this.
	must(t, h.vpc.Attach(eth1))
	eventually(t, 10*time.Second, "hot attach seen through the new subscription", h.allPass(allAddrs(eth1)))
}

// If IMDS stops answering right after a change ec2net made, the change is
// rolled back (nothing else could ever correct it); when IMDS answers
// again the ENI is tried once more.
func TestCutOffRightAfterAChangeIsRolledBack(t *testing.T) {
	h := startHarness(t, "dmcut", func(c *config.Config) { c.RefreshInterval = time.Hour })
	must(t, h.vpc.Attach(eth1))
	n := len(allAddrs(eth1))
	eventually(t, 10*time.Second, "eth1's rules", func() error {
		if got := tableRules(h.ownedRules(), 10001); got != n {
			return fmt.Errorf("%d rules", got)
		}
		return nil
	})
	// As if those rules had cut the host off from IMDS.
	h.vpc.IMDS.SetFault("", fakeimds.Fault{Kind: fakeimds.FaultHang, Token: true})
	eventually(t, 15*time.Second, "the change rolled back", func() error {
		if got := tableRules(h.ownedRules(), 10001); got != 0 {
			return fmt.Errorf("%d rules still there", got)
		}
		return nil
	})
	if err := h.probeBoth(netip.MustParseAddr("100.64.1.11")); err != nil {
		t.Errorf("the primary's address after the rollback: %v", err)
	}
	h.vpc.IMDS.ClearFaults()
	eventually(t, 15*time.Second, "tried again once IMDS answers", h.allPass(allAddrs(eth1)))
}
