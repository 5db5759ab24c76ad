package main

// End-to-end tests of the ec2net binary in a simulated VPC: the binary runs
// inside the instance namespace (`ip netns exec`), reads the fake IMDS at
// 169.254.169.254 through the VPC router, and the proof is real traffic
// through a router that enforces the source/destination check.

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/imds/fakeimds"
	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
)

var ec2netBin string

func TestMain(m *testing.M) {
	code := func() int {
		if p := os.Getenv("EC2NET_BIN"); p != "" {
			if _, err := os.Stat(p); err == nil {
				ec2netBin = p
				return m.Run()
			}
		}
		dir, err := os.MkdirTemp("", "ec2net-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ec2netBin = filepath.Join(dir, "ec2net")
		if out, err := exec.Command("go", "build", "-o", ec2netBin, ".").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build ec2net: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

var (
	subnetA  = netip.MustParsePrefix("100.64.1.0/24")
	subnetA6 = netip.MustParsePrefix("2001:db8:0:1::/64")
	subnetB  = netip.MustParsePrefix("100.64.2.0/24")
	subnetB6 = netip.MustParsePrefix("2001:db8:0:2::/64")
)

// bed is a simulated instance with a primary and two secondary ENIs: one
// dual-stack with two IPv6 addresses in another subnet, one in the
// primary's subnet with a delegated IPv4 prefix; three IPv4 addresses each.
type bed struct {
	t        testing.TB
	vpc      *vpcsim.VPC
	stateDir string
	primary  vpcsim.ENISpec
	eth1     vpcsim.ENISpec
	eth2     vpcsim.ENISpec
}

func newBed(t testing.TB, prefix string) *bed {
	t.Helper()
	nstest.RequireRoot(t)
	vpc := vpcsim.NewForTest(t, prefix)
	must(t, vpc.AddSubnet(subnetA, subnetA6))
	must(t, vpc.AddSubnet(subnetB, subnetB6))
	b := &bed{t: t, vpc: vpc, stateDir: t.TempDir()}
	b.primary = vpcsim.ENISpec{Name: "eth0", MAC: "02:ec:20:00:01:00", ID: "eni-0e2e0000000000100", Device: 0,
		SubnetIPv4: subnetA, IPv4: vpcsim.Addrs("100.64.1.10", "100.64.1.11", "100.64.1.12")}
	b.eth1 = vpcsim.ENISpec{Name: "eth1", MAC: "02:ec:20:00:01:01", ID: "eni-0e2e0000000000101", Device: 1,
		SubnetIPv4: subnetB, SubnetIPv6: subnetB6,
		IPv4: vpcsim.Addrs("100.64.2.10", "100.64.2.11", "100.64.2.12"), IPv6: vpcsim.Addrs("2001:db8:0:2::10", "2001:db8:0:2::11")}
	b.eth2 = vpcsim.ENISpec{Name: "eth2", MAC: "02:ec:20:00:01:02", ID: "eni-0e2e0000000000102", Device: 2,
		SubnetIPv4: subnetA, IPv4: vpcsim.Addrs("100.64.1.20", "100.64.1.21", "100.64.1.22"),
		IPv4Prefixes: []netip.Prefix{netip.MustParsePrefix("100.64.1.48/28")}}
	must(t, vpc.LaunchPrimary(b.primary))
	must(t, vpc.Attach(b.eth1))
	must(t, vpc.Attach(b.eth2))
	return b
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ec2net runs the binary inside the instance namespace.
func (b *bed) ec2net(args ...string) (string, int) {
	b.t.Helper()
	return b.ec2netVia(nil, args...)
}

// ec2netVia runs the binary through a wrapper command (e.g. setpriv).
func (b *bed) ec2netVia(wrapper []string, args ...string) (string, int) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := append(append(append([]string{"netns", "exec", b.vpc.Instance}, wrapper...), ec2netBin), args...)
	argv = append(argv, "--imds-endpoint", "http://169.254.169.254", "--state-dir", b.stateDir, "--config", "/dev/null")
	cmd := exec.CommandContext(ctx, "ip", argv...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			b.t.Fatalf("run ec2net %v: %v", args, err)
		}
	}
	b.t.Logf("ec2net %s (exit %d):\n%s", strings.Join(args, " "), code, out)
	return string(out), code
}

// ip runs `ip` inside the instance namespace.
func (b *bed) ip(args ...string) string {
	b.t.Helper()
	out, err := b.vpc.Exec(b.vpc.Instance, append([]string{"ip"}, args...)...)
	if err != nil {
		b.t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
	return out
}

func (b *bed) secondaryAddrs() []netip.Addr {
	var out []netip.Addr
	out = append(out, b.eth1.IPv4...)
	out = append(out, b.eth1.IPv6...)
	out = append(out, b.eth2.IPv4...)
	return out
}

func (b *bed) allAddrs() []netip.Addr {
	return append(append([]netip.Addr{}, b.primary.IPv4...), b.secondaryAddrs()...)
}

// assertTraffic checks outbound and inbound TCP from/to every address and
// that the remote host saw the right source.
func (b *bed) assertTraffic(addrs []netip.Addr) {
	b.t.Helper()
	for _, a := range addrs {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		res, err := b.vpc.ProbeTCP(ctx, a)
		cancel()
		if err != nil {
			drops, _ := b.vpc.Drops()
			b.t.Errorf("outbound from %s failed: %v\nrouter drops:\n%s", a, err, drops)
			continue
		}
		if res.SeenSource != a {
			b.t.Errorf("outbound from %s: remote saw source %s", a, res.SeenSource)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
		_, err = b.vpc.ProbeInbound(ctx, a)
		cancel()
		if err != nil {
			b.t.Errorf("inbound to %s failed: %v", a, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := b.vpc.ProbeIMDS(ctx); err != nil {
		b.t.Errorf("IMDS unreachable from the instance: %v", err)
	}
}

// assertCheckEnforced configures each secondary ENI the way a person would
// by hand without policy routing (address with the subnet length, link up),
// shows that its traffic is dropped by the VPC router's source/destination
// check, and undoes the hand configuration.
func (b *bed) assertCheckEnforced(enis ...vpcsim.ENISpec) {
	b.t.Helper()
	for _, e := range enis {
		a := e.IPv4[0]
		cidr := netip.PrefixFrom(a, e.SubnetIPv4.Bits()).String()
		b.ip("addr", "add", cidr, "dev", e.Name)
		b.ip("link", "set", e.Name, "up")
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := b.vpc.ProbeTCP(ctx, a)
		cancel()
		if err == nil {
			b.t.Errorf("outbound from %s passed without policy routing: the simulator does not enforce the check", a)
		}
		if drops, _ := b.vpc.Drops(); !strings.Contains(drops, a.String()) {
			b.t.Errorf("router dropped nothing from %s:\n%s", a, drops)
		}
		b.ip("addr", "del", cidr, "dev", e.Name)
		b.ip("link", "set", e.Name, "down")
	}
}

var changesLine = regexp.MustCompile(`ec2net apply: \d+ ENIs, (\d+) changes, (\d+) netlink writes`)

func TestApplyWarmAttachEveryAddressCarriesTraffic(t *testing.T) {
	for _, rp := range []string{"1", "2"} {
		t.Run("rp_filter="+rp, func(t *testing.T) {
			b := newBed(t, "e2eap"+rp)
			for _, key := range []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter", "net.ipv4.conf.eth0.rp_filter", "net.ipv4.conf.eth1.rp_filter", "net.ipv4.conf.eth2.rp_filter"} {
				must(t, b.vpc.Sysctl(b.vpc.Instance, key, rp))
			}
			b.assertCheckEnforced(b.eth1, b.eth2)
			eth0Before := b.ip("-4", "addr", "show", "dev", "eth0")
			defaultBefore := b.ip("route", "show", "default")

			_, code := b.ec2net("apply", "--wait", "10s")
			if code != 0 {
				t.Fatalf("apply exit %d", code)
			}
			b.assertTraffic(b.allAddrs())

			// A second apply makes zero changes.
			out, code := b.ec2net("apply")
			m := changesLine.FindStringSubmatch(out)
			if code != 0 || m == nil || m[1] != "0" || m[2] != "0" {
				t.Fatalf("second apply: exit %d, want 0 changes and 0 writes: %q", code, out)
			}

			// cleanup removes every owned rule and table route, and leaves
			// eth0 as it was.
			_, code = b.ec2net("cleanup")
			if code != 0 {
				t.Fatalf("cleanup exit %d", code)
			}
			if rules := b.ownedRules(); rules != "" {
				t.Errorf("owned rules left after cleanup:\n%s", rules)
			}
			if routes := strings.TrimSpace(b.ip("route", "show", "table", "all", "proto", "236")); routes != "" {
				t.Errorf("owned routes left after cleanup:\n%s", routes)
			}
			if routes := strings.TrimSpace(b.ip("-6", "route", "show", "table", "all", "proto", "236")); routes != "" {
				t.Errorf("owned IPv6 routes left after cleanup:\n%s", routes)
			}
			if got := b.ip("-4", "addr", "show", "dev", "eth0"); stripDynamic(got) != stripDynamic(eth0Before) {
				t.Errorf("eth0 changed by apply+cleanup:\nbefore:\n%s\nafter:\n%s", eth0Before, got)
			}
			if got := b.ip("route", "show", "default"); got != defaultBefore {
				t.Errorf("default route changed:\nbefore: %s\nafter: %s", defaultBefore, got)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if err := b.vpc.ProbeIMDS(ctx); err != nil {
				t.Errorf("IMDS unreachable after cleanup: %v", err)
			}
		})
	}
}

// ownedRules lists the IPv4 and IPv6 rules carrying ec2net's protocol
// (iproute2 6.1 does not filter `ip rule show` by protocol itself).
func (b *bed) ownedRules() string {
	var out []string
	for _, l := range strings.Split(b.ip("rule", "show")+b.ip("-6", "rule", "show"), "\n") {
		if strings.HasSuffix(strings.TrimSpace(l), "proto 236") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// stripDynamic removes lifetimes, which tick, and altnames, which cleanup
// leaves (they are names, not networking: documented).
func stripDynamic(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "valid_lft") || strings.Contains(l, "altname") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// Foreign state survives: a Docker-like bridge with a DNAT'd published
// port stays reachable from the host (amazon-ec2-net-utils #97), and user
// rules and routes in and around 10000-10999 are untouched by apply and
// cleanup.
func TestForeignStateSurvivesApplyAndCleanup(t *testing.T) {
	b := newBed(t, "e2efor")
	_, _, err := b.vpc.AddDockerLikeBridge()
	must(t, err)
	probePublished := func(when string) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := b.vpc.ProbePublishedPort(ctx); err != nil {
			t.Errorf("published port unreachable %s: %v", when, err)
		}
	}
	probePublished("before apply")

	foreign := [][]string{
		{"rule", "add", "from", "100.64.9.9", "lookup", "10001", "pref", "10001", "proto", "static"},
		{"rule", "add", "from", "100.64.9.10", "lookup", "100", "pref", "9999"},
		{"rule", "add", "to", "100.64.9.0/24", "lookup", "10050", "pref", "10050"},
		{"rule", "add", "fwmark", "0x80", "lookup", "main", "pref", "1024"},
		{"route", "add", "100.64.9.0/24", "dev", "eth0", "table", "10001", "proto", "static"},
		{"route", "add", "100.64.8.0/24", "via", "100.64.1.1", "dev", "eth0", "table", "10002"},
		{"route", "add", "100.64.7.0/24", "via", "100.64.1.1", "dev", "eth0"},
		{"-6", "rule", "add", "from", "2001:db8:9::/64", "lookup", "10001", "pref", "10001"},
	}
	for _, c := range foreign {
		b.ip(c...)
	}
	snapshot := func() string {
		var parts []string
		for _, l := range strings.Split(b.ip("rule", "show")+b.ip("-6", "rule", "show")+
			b.ip("route", "show", "table", "all")+b.ip("-6", "route", "show", "table", "all"), "\n") {
			if strings.Contains(l, "100.64.9.") || strings.Contains(l, "100.64.8.") || strings.Contains(l, "100.64.7.") ||
				strings.Contains(l, "2001:db8:9::") || strings.Contains(l, "fwmark") {
				parts = append(parts, l)
			}
		}
		sort.Strings(parts)
		return strings.Join(parts, "\n")
	}
	before := snapshot()
	if strings.Count(before, "\n") < len(foreign)-1 {
		t.Fatalf("foreign state not all visible:\n%s", before)
	}

	_, code := b.ec2net("apply", "--wait", "10s")
	if code != 0 {
		t.Fatalf("apply exit %d", code)
	}
	if got := snapshot(); got != before {
		t.Errorf("foreign state changed by apply:\nbefore:\n%s\nafter:\n%s", before, got)
	}
	probePublished("after apply")
	b.assertTraffic(b.secondaryAddrs())

	_, code = b.ec2net("cleanup")
	if code != 0 {
		t.Fatalf("cleanup exit %d", code)
	}
	if got := snapshot(); got != before {
		t.Errorf("foreign state changed by cleanup:\nbefore:\n%s\nafter:\n%s", before, got)
	}
	probePublished("after cleanup")
}

func TestPlanChangesNothingAndStatusReports(t *testing.T) {
	b := newBed(t, "e2epl")
	rulesBefore := b.ip("rule", "show")
	out, code := b.ec2net("plan")
	if code != 0 {
		t.Fatalf("plan exit %d", code)
	}
	if !strings.Contains(out, "lookup 10001") || !strings.Contains(out, "100.64.2.11") {
		t.Errorf("plan does not show the rules for eth1:\n%s", out)
	}
	if got := b.ip("rule", "show"); got != rulesBefore {
		t.Errorf("plan changed rules")
	}
	_, code = b.ec2net("apply", "--wait", "10s")
	if code != 0 {
		t.Fatalf("apply exit %d", code)
	}
	out, code = b.ec2net("status")
	if code != 0 {
		t.Fatalf("status exit %d", code)
	}
	for _, want := range []string{"eth1", "10001", "10002", "configured", "3 ENIs"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	out, code = b.ec2net("status", "--json")
	if code != 0 || !strings.Contains(out, `"enis"`) {
		t.Errorf("status --json: exit %d\n%s", code, out)
	}
}

func TestApplyReportsPendingENIWithExit2(t *testing.T) {
	b := newBed(t, "e2epen")
	b.vpc.IMDS.SetPropagation(time.Hour, "subnet-ipv4-cidr-block")
	eth3 := vpcsim.ENISpec{Name: "eth3", MAC: "02:ec:20:00:01:03", ID: "eni-0e2e0000000000103", Device: 3,
		SubnetIPv4: subnetB, IPv4: vpcsim.Addrs("100.64.2.30")}
	must(t, b.vpc.Attach(eth3))
	out, code := b.ec2net("apply", "--wait", "1s")
	if code != 2 {
		t.Fatalf("apply exit %d, want 2 (pending)", code)
	}
	if !strings.Contains(out, "02:ec:20:00:01:03") || !strings.Contains(out, "pending") {
		t.Errorf("apply does not say which ENI is pending:\n%s", out)
	}
	// The other ENIs are configured anyway, and nothing points at table 10000.
	b.assertTraffic(b.eth1.IPv4)
	if strings.Contains(b.ip("rule", "show"), "lookup 10000 ") {
		t.Errorf("a rule points at table 10000 (device-number 0 guessed)")
	}
}

func TestErrorsAreOneClearLine(t *testing.T) {
	b := newBed(t, "e2eerr")
	// IMDS disabled (403 on every path, the token too).
	b.vpc.IMDS.SetFault("", fakeimds.Fault{Kind: fakeimds.Fault403, Token: true})
	out, code := b.ec2net("apply", "--wait", "1s")
	if code != 1 || !strings.Contains(out, "IMDS is turned off") || !strings.Contains(out, "--instance-id") {
		t.Errorf("403: exit %d, want 1 and the whole command to fix it:\n%s", code, out)
	}
	b.vpc.IMDS.ClearFaults()
	// Unreachable endpoint (nothing listens on this port in the router).
	argv := []string{"netns", "exec", b.vpc.Instance, ec2netBin, "plan", "--imds-endpoint", "http://169.254.169.254:81", "--state-dir", b.stateDir, "--config", "/dev/null"}
	o, err := exec.Command("ip", argv...).CombinedOutput()
	if err == nil || !strings.Contains(string(o), "is this an EC2 instance? see --imds-endpoint") {
		t.Errorf("unreachable: err %v, output:\n%s", err, o)
	}
	if n := strings.Count(strings.TrimSpace(string(o)), "\n"); n != 0 {
		t.Errorf("unreachable: want one line, got %d:\n%s", n+1, o)
	}
}

// The systemd unit gives ec2net CAP_NET_ADMIN and nothing else. setns(2)
// needs CAP_SYS_ADMIN even into the namespace a thread is already in, so
// ec2net must never call it for its own namespace.
func TestApplyWithOnlyCapNetAdmin(t *testing.T) {
	b := newBed(t, "e2ecap")
	onlyNetAdmin := []string{"setpriv", "--bounding-set", "-all,+net_admin", "--inh-caps", "-all", "--"}
	if _, code := b.ec2netVia(onlyNetAdmin, "apply", "--wait", "10s"); code != 0 {
		t.Fatalf("apply with only CAP_NET_ADMIN: exit %d", code)
	}
	b.assertTraffic(b.secondaryAddrs())
	if out, code := b.ec2netVia([]string{"setpriv", "--bounding-set", "-all", "--inh-caps", "-all", "--"}, "apply"); code != 1 || !strings.Contains(out, "CAP_NET_ADMIN") {
		t.Errorf("apply without CAP_NET_ADMIN: exit %d, want 1 and a line naming CAP_NET_ADMIN:\n%s", code, out)
	}
}

// IMDS over IPv6 (fd00:ec2::254), as on Nitro instances with the IPv6
// endpoint turned on: --imds-endpoint-mode ipv6, no explicit endpoint.
func TestApplyOverIPv6MetadataEndpoint(t *testing.T) {
	nstest.RequireRoot(t)
	vpc := vpcsim.NewForTest(t, "e2ev6")
	must(t, vpc.AddSubnet(subnetA, subnetA6))
	must(t, vpc.AddSubnet(subnetB, subnetB6))
	must(t, vpc.LaunchPrimary(vpcsim.ENISpec{Name: "eth0", MAC: "02:ec:20:00:06:00", ID: "eni-0e2e0000000000600",
		SubnetIPv4: subnetA, SubnetIPv6: subnetA6, IPv4: vpcsim.Addrs("100.64.1.10"), IPv6: vpcsim.Addrs("2001:db8:0:1::10")}))
	eth1 := vpcsim.ENISpec{Name: "eth1", MAC: "02:ec:20:00:06:01", ID: "eni-0e2e0000000000601", Device: 1,
		SubnetIPv4: subnetB, SubnetIPv6: subnetB6, IPv4: vpcsim.Addrs("100.64.2.10"), IPv6: vpcsim.Addrs("2001:db8:0:2::10")}
	must(t, vpc.Attach(eth1))
	// Make the IPv4 endpoint unreachable from the instance: only the IPv6
	// endpoint can succeed.
	if out, err := vpc.Exec(vpc.Instance, "ip", "route", "add", "blackhole", "169.254.169.254/32"); err != nil {
		t.Fatalf("blackhole the IPv4 endpoint: %v: %s", err, out)
	}
	vpc.IMDS.ResetCounters()
	out, err := exec.Command("ip", "netns", "exec", vpc.Instance, ec2netBin, "apply", "--imds-endpoint-mode", "ipv6",
		"--state-dir", t.TempDir(), "--config", "/dev/null", "--wait", "10s").CombinedOutput()
	t.Logf("ec2net apply --imds-endpoint-mode ipv6:\n%s", out)
	if err != nil {
		t.Fatalf("apply over the IPv6 endpoint: %v", err)
	}
	if out, err := vpc.Exec(vpc.Instance, "ip", "route", "del", "blackhole", "169.254.169.254/32"); err != nil {
		t.Fatalf("undo the blackhole: %v: %s", err, out)
	}
	b := &bed{t: t, vpc: vpc}
	b.assertTraffic(append(eth1.IPv4, eth1.IPv6...))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := vpc.ProbeIMDSIPv6(ctx); err != nil {
		t.Errorf("IPv6 IMDS endpoint unreachable after apply: %v", err)
	}
	if vpc.IMDS.TotalRequests() == 0 {
		t.Errorf("the fake IMDS saw no request")
	}
}

// status is what an SRE runs when something is wrong: with IMDS turned off
// it still shows the kernel side, says why in one line, and exits 1.
func TestStatusWithIMDSDownStillShowsTheKernel(t *testing.T) {
	b := newBed(t, "e2esdn")
	if _, code := b.ec2net("apply", "--wait", "10s"); code != 0 {
		t.Fatalf("apply exit %d", code)
	}
	b.vpc.IMDS.SetFault("", fakeimds.Fault{Kind: fakeimds.Fault403, Token: true})
	out, code := b.ec2net("status")
	if code != 1 || !strings.Contains(out, "IMDS is turned off") || !strings.Contains(out, "eth1") {
		t.Errorf("status with IMDS off: exit %d\n%s", code, out)
	}
	// One readable summary line, no empty totals or raw counters.
	if !strings.Contains(out, "IMDS not read: the kernel side only") || strings.Contains(out, "ENIs: ;") || strings.Contains(out, "requests=") {
		t.Errorf("status with IMDS off should summarise the kernel side in words:\n%s", out)
	}
	// And nothing was removed because of it.
	if n := strings.Count(b.ownedRules(), "proto 236"); n != len(b.secondaryAddrs())+1 {
		t.Errorf("%d owned rules after status with IMDS off, want %d", n, len(b.secondaryAddrs())+1)
	}
}

// status works without root: read-only, with the ownership record it
// cannot read named as such, never blaming CAP_NET_ADMIN.
func TestStatusWithoutRoot(t *testing.T) {
	b := newBed(t, "e2enr")
	if _, code := b.ec2net("apply", "--wait", "10s"); code != 0 {
		t.Fatalf("apply exit %d", code)
	}
	nobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--"}
	out, code := b.ec2netVia(nobody, "status")
	if code != 0 || !strings.Contains(out, "eth1") || !strings.Contains(out, "configured") || strings.Contains(out, "CAP_NET_ADMIN") {
		t.Errorf("status as nobody: exit %d, want 0 and the ENIs:\n%s", code, out)
	}
	if !strings.Contains(out, "ownership record not readable") {
		t.Errorf("status as nobody does not say it cannot read the ownership record:\n%s", out)
	}
	if out, code := b.ec2netVia(nobody, "apply"); code != 1 || !strings.Contains(out, "CAP_NET_ADMIN") {
		t.Errorf("apply as nobody: exit %d, want 1 naming CAP_NET_ADMIN:\n%s", code, out)
	}
}

// `ec2net run` as a process: it configures the cold-attached ENIs, a
// cleanup run beside it is warned (and undone by the daemon's repair), and
// SIGTERM ends it promptly with the configuration left in place.
func TestRunProcessCleanupWarningAndSIGTERM(t *testing.T) {
	b := newBed(t, "e2erun")
	d := b.startDaemon(t)
	want := len(b.secondaryAddrs()) + 1 // + eth2's delegated prefix
	waitFor(t, 15*time.Second, func() bool { return strings.Count(b.ownedRules(), "proto 236") == want })

	out, _ := b.ec2net("cleanup")
	if !strings.Contains(out, "will restore what cleanup removes") {
		t.Errorf("cleanup beside a running daemon did not warn:\n%s", out)
	}
	waitFor(t, 15*time.Second, func() bool { return strings.Count(b.ownedRules(), "proto 236") == want })

	must(t, d.cmd.Signal(syscall.SIGTERM))
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("daemon exit after SIGTERM: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("daemon still running 5s after SIGTERM")
	}
	if n := strings.Count(b.ownedRules(), "proto 236"); n != want {
		t.Errorf("%d owned rules after SIGTERM, want %d (configuration left in place)", n, want)
	}
	b.assertTraffic(b.secondaryAddrs())
}
