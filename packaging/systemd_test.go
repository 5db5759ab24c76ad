package packaging

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/imds/fakeimds"
	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
	"github.com/vishvananda/netlink"
)

var (
	pkgSubnetA  = netip.MustParsePrefix("100.64.1.0/24")
	pkgSubnetA6 = netip.MustParsePrefix("2001:db8:0:1::/64")
	pkgSubnetB  = netip.MustParsePrefix("100.64.2.0/24")
	pkgSubnetB6 = netip.MustParsePrefix("2001:db8:0:2::/64")

	pkgPrimary = vpcsim.ENISpec{Name: "eth0", MAC: "02:ec:20:00:06:00", ID: "eni-0e0000000000000600", Device: 0,
		SubnetIPv4: pkgSubnetA, SubnetIPv6: pkgSubnetA6, IPv4: []netip.Addr{netip.MustParseAddr("100.64.1.10")}}
	// Attached before the package is installed: the first reconcile, which
	// READY=1 waits for, configures it.
	pkgCold = vpcsim.ENISpec{Name: "eth1", MAC: "02:ec:20:00:06:01", ID: "eni-0e0000000000000601", Device: 1,
		SubnetIPv4: pkgSubnetB, SubnetIPv6: pkgSubnetB6,
		IPv4: []netip.Addr{netip.MustParseAddr("100.64.2.10"), netip.MustParseAddr("100.64.2.11")}}
	// Hot-attached while the service runs.
	pkgHot = vpcsim.ENISpec{Name: "eth2", MAC: "02:ec:20:00:06:02", ID: "eni-0e0000000000000602", Device: 2,
		SubnetIPv4: pkgSubnetA, IPv4: []netip.Addr{netip.MustParseAddr("100.64.1.20"), netip.MustParseAddr("100.64.1.21")}}
)

const unit = "ec2net.service"

// TestSystemdService installs the .deb into a Debian booted with a real
// systemd inside a simulated VPC's instance namespace, and checks the
// service's whole life: start only after READY, a hot-attached ENI that
// carries traffic, reload, the watchdog, stop, upgrade, remove, purge.
func TestSystemdService(t *testing.T) {
	nstest.RequireRoot(t)
	requireTools(t, "systemd-nspawn", "nsenter", "debootstrap")
	p := packages(t)
	root := overlayRoot(t) // before the VPC: the first debootstrap is slow
	start := time.Now()
	check := func(format string, args ...any) { t.Logf("CHECK "+format, args...) }

	vpc := vpcsim.NewForTest(t, "ec2pk")
	must(t, vpc.AddSubnet(pkgSubnetA, pkgSubnetA6))
	must(t, vpc.AddSubnet(pkgSubnetB, pkgSubnetB6))
	must(t, vpc.LaunchPrimary(pkgPrimary))
	must(t, vpc.Attach(pkgCold))
	nsh, err := vpc.Handle(vpc.Instance)
	must(t, err)
	nl, err := netlink.NewHandleAt(nsh)
	must(t, err)
	t.Cleanup(nl.Close)

	copyFile(t, p.Deb, filepath.Join(root, "root/ec2net-1.deb"))
	// amazon-ec2-net-utils' files, as on Amazon Linux 2023: the package
	// masks its per-ENI units under a running systemd too.
	netUtils := fakeEC2NetUtils(t, root)
	copyFile(t, p.Deb2, filepath.Join(root, "root/ec2net-2.deb"))
	m := bootMachine(t, root, vpc.Instance)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := m.exec("journalctl --no-pager -n 80 -u " + unit)
			t.Logf("journal of %s:\n%s", unit, out)
			if strings.Contains(out, "network namespace") && strings.Contains(out, "operation not permitted") {
				t.Logf("HINT: the unit grants only CAP_NET_ADMIN; setns(2), even into the namespace the daemon " +
					"is already in, needs CAP_SYS_ADMIN. Do not enter the current namespace: pass netns.None() " +
					"to vishvananda/netlink's *At functions and subscriptions, and skip netns.Set in nsutil.Do, " +
					"when the target is the current namespace.")
			}
		}
	})

	coldAddr, hotAddr := pkgCold.IPv4[0], pkgHot.IPv4[0]

	// 1. dpkg -i enables and starts the service, which becomes active only
	// after READY=1, and READY=1 only after the first reconcile. IMDS
	// answers slowly for the cold ENI, so the start visibly takes a while;
	// a sampler records (unit state, cold ENI rule present) meanwhile.
	vpc.IMDS.SetFault("network/interfaces/macs/"+pkgCold.MAC+"/local-ipv4s",
		fakeimds.Fault{Kind: fakeimds.FaultSlow, Delay: 1500 * time.Millisecond})
	type sample struct {
		state string
		rule  bool
	}
	var (
		samples []sample
		smu     sync.Mutex
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			// State first, rule second: rules are only added during the
			// install, so if the unit was active when its state was read,
			// the rule must be there when it is read afterwards.
			out, _ := m.exec("systemctl is-active " + unit)
			rule := hasRule(nl, coldAddr)
			smu.Lock()
			samples = append(samples, sample{strings.TrimSpace(out), rule})
			smu.Unlock()
			time.Sleep(30 * time.Millisecond)
		}
	}()
	installStart := time.Now()
	out := m.mustExec("dpkg -i /root/ec2net-1.deb")
	installTook := time.Since(installStart)
	close(stop)
	<-sampled
	vpc.IMDS.ClearFaults()
	if s := m.unitProperty(unit, "UnitFileState"); s != "enabled" {
		t.Errorf("after dpkg -i the unit is %q, want enabled\n%s", s, out)
	}
	if s := m.unitProperty(unit, "ActiveState"); s != "active" {
		t.Fatalf("after dpkg -i the service is %q, want active\n%s", s, out)
	}
	activating := 0
	for _, s := range samples {
		if s.state == "activating" {
			activating++
		}
		if s.state == "active" && !s.rule {
			t.Errorf("the service was active before the cold ENI's rule existed: READY=1 came before the first reconcile")
		}
	}
	netUtils.assertMasked(t, "dpkg -i under systemd")
	for _, u := range []string{"policy-routes@eth1.service", "refresh-policy-routes@eth1.timer"} {
		if s := m.unitProperty(u, "LoadState"); s != "masked" {
			t.Errorf("after dpkg -i, %s is %s, want masked", u, s)
		}
	}
	if activating == 0 {
		t.Errorf("never saw the service activating during dpkg -i (%d samples): is READY sent at start, before the reconcile?", len(samples))
	}
	if !hasRule(nl, coldAddr) || !hasAddr(nl, pkgCold.IPv4[1]) {
		t.Errorf("cold-attached %s not configured when the service became active", pkgCold.Name)
	}
	check("dpkg -i enabled and started %s in %v; %d of %d samples 'activating', never active before the cold ENI's rule; status %q; amazon-ec2-net-utils' per-ENI units masked",
		unit, installTook.Round(time.Millisecond), activating, len(samples), m.unitProperty(unit, "StatusText"))
	if w := m.unitProperty(unit, "WatchdogUSec"); w == "0" || w == "infinity" || w == "" {
		t.Errorf("the packaged unit has no watchdog (WatchdogUSec=%q)", w)
	}
	probe(t, vpc, coldAddr)

	// 2. A hot-attached ENI is configured by the service and carries traffic.
	attached := time.Now()
	must(t, vpc.Attach(pkgHot))
	waitFor(t, 20*time.Second, "the service to configure hot-attached "+pkgHot.Name, func() (bool, string) {
		r, a := hasRule(nl, hotAddr), hasAddr(nl, pkgHot.IPv4[1])
		return r && a, "rule " + strconv.FormatBool(r) + ", secondary address " + strconv.FormatBool(a)
	})
	res := probe(t, vpc, hotAddr)
	check("hot-attached %s configured %v after attach; TCP from %s reaches the remote host (seen as %s)",
		pkgHot.Name, time.Since(attached).Round(time.Millisecond), hotAddr, res.SeenSource)

	// 3. systemctl reload sends SIGHUP: same process, still active.
	pid := m.unitProperty(unit, "MainPID")
	m.mustExec("systemctl reload " + unit)
	if s, p2 := m.unitProperty(unit, "ActiveState"), m.unitProperty(unit, "MainPID"); s != "active" || p2 != pid {
		t.Errorf("after reload: %s, MainPID %s (was %s); want active, same PID", s, p2, pid)
	}
	check("systemctl reload: still active, same main PID %s", pid)

	// 4. A wedged main loop is killed by the watchdog and restarted. A
	// drop-in (test only) enables the hook and shortens the watchdog.
	m.mustExec(`mkdir -p /etc/systemd/system/ec2net.service.d && printf '[Service]\nEnvironment=EC2NET_TEST_HOOKS=1\nWatchdogSec=3s\n' >/etc/systemd/system/ec2net.service.d/test-hooks.conf && systemctl daemon-reload && systemctl restart ` + unit)
	restarts, _ := strconv.Atoi(m.unitProperty(unit, "NRestarts"))
	pid = m.unitProperty(unit, "MainPID")
	wedged := time.Now()
	m.mustExec("systemctl kill --kill-whom=main --signal=SIGUSR2 " + unit)
	waitFor(t, 30*time.Second, "the watchdog to kill and restart the wedged daemon", func() (bool, string) {
		n, _ := strconv.Atoi(m.unitProperty(unit, "NRestarts"))
		s, p2 := m.unitProperty(unit, "ActiveState"), m.unitProperty(unit, "MainPID")
		return n > restarts && s == "active" && p2 != pid && p2 != "0", "NRestarts " + strconv.Itoa(n) + ", " + s + ", MainPID " + p2
	})
	journal := m.mustExec("journalctl --no-pager -u " + unit)
	if !strings.Contains(journal, "Failed with result 'watchdog'") {
		t.Errorf("the journal does not show a watchdog failure:\n%s", journal)
	}
	if !hasRule(nl, hotAddr) || !hasRule(nl, coldAddr) {
		t.Errorf("rules missing after the watchdog restart")
	}
	check("SIGUSR2 wedged the main loop; watchdog killed it (Result=watchdog in the journal) and systemd restarted it (main PID %s -> %s) in %v; rules kept",
		pid, m.unitProperty(unit, "MainPID"), time.Since(wedged).Round(time.Millisecond))
	m.mustExec("rm -r /etc/systemd/system/ec2net.service.d && systemctl daemon-reload && systemctl restart " + unit)

	// 5. systemctl stop leaves the configuration in place.
	m.mustExec("systemctl stop " + unit)
	if s := m.unitProperty(unit, "ActiveState"); s != "inactive" {
		t.Errorf("after stop: %s", s)
	}
	if !hasRule(nl, hotAddr) || !hasRule(nl, coldAddr) || !hasAddr(nl, pkgHot.IPv4[1]) {
		t.Errorf("systemctl stop removed configuration")
	}
	probe(t, vpc, hotAddr)
	if _, err := m.exec("test -d /run/ec2net"); err != nil {
		t.Errorf("systemctl stop removed /run/ec2net (the ownership records): %v", err)
	}
	check("systemctl stop: inactive; rules, addresses and /run/ec2net kept; %s still carries traffic", hotAddr)
	m.mustExec("systemctl start " + unit)

	// 6. Upgrading never flushes networking: a watcher polls the rules
	// throughout dpkg -i of release 2; the daemon is restarted.
	pid = m.unitProperty(unit, "MainPID")
	var missing []string
	stop = make(chan struct{})
	watched := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				watched <- n
				return
			default:
			}
			for _, a := range []netip.Addr{coldAddr, hotAddr} {
				if !hasRule(nl, a) {
					missing = append(missing, a.String()+" at "+time.Now().Format("15:04:05.000"))
				}
			}
			n++
			time.Sleep(2 * time.Millisecond)
		}
	}()
	upgradeStart := time.Now()
	out = m.mustExec("dpkg -i /root/ec2net-2.deb")
	upgradeTook := time.Since(upgradeStart)
	close(stop)
	polls := <-watched
	if len(missing) > 0 {
		t.Errorf("rules vanished during the upgrade: %v\n%s", missing, out)
	}
	v2 := strings.TrimSpace(m.mustExec("dpkg-query -W -f '${Version}' ec2net"))
	if !strings.HasSuffix(v2, "-2") {
		t.Errorf("installed version after upgrade %q", v2)
	}
	if s, p2 := m.unitProperty(unit, "ActiveState"), m.unitProperty(unit, "MainPID"); s != "active" || p2 == pid {
		t.Errorf("after upgrade: %s, MainPID %s (was %s); want active and restarted", s, p2, pid)
	}
	if s := m.unitProperty(unit, "UnitFileState"); s != "enabled" {
		t.Errorf("after upgrade the unit is %s", s)
	}
	probe(t, vpc, hotAddr)
	check("upgrade to %s in %v: restarted (PID %s -> %s), rules present in all %d polls, traffic flows",
		v2, upgradeTook.Round(time.Millisecond), pid, m.unitProperty(unit, "MainPID"), polls)

	// 7. dpkg -r stops and disables the service; the configuration file
	// and the network configuration stay.
	m.mustExec("dpkg -r ec2net")
	assertRemoved(t, m)
	if _, err := m.exec("test -f /etc/ec2net/ec2net.conf"); err != nil {
		t.Errorf("dpkg -r removed the configuration file: %v", err)
	}
	if !hasRule(nl, hotAddr) {
		t.Errorf("dpkg -r flushed the network configuration")
	}
	netUtils.assertUnmasked(t, "dpkg -r under systemd")
	if s := m.unitProperty("policy-routes@eth1.service", "LoadState"); s != "loaded" {
		t.Errorf("after dpkg -r, policy-routes@eth1.service is %s, want loaded (unmasked)", s)
	}
	check("dpkg -r: service stopped and disabled, binary and unit gone, conffile and network configuration kept; amazon-ec2-net-utils' units unmasked")

	// 8. Re-installing after a remove counts as a fresh install (dpkg
	// passes the old version to postinst then).
	m.mustExec("dpkg -i /root/ec2net-2.deb")
	if s, e := m.unitProperty(unit, "ActiveState"), m.unitProperty(unit, "UnitFileState"); s != "active" || e != "enabled" {
		t.Errorf("re-install after remove: %s, %s; want active, enabled", s, e)
	}
	check("dpkg -i after dpkg -r: enabled and active again")

	// 9. dpkg -P removes everything the package and service left.
	m.mustExec("dpkg -P ec2net")
	assertRemoved(t, m)
	for _, d := range []string{"/etc/ec2net", "/run/ec2net", "/var/lib/ec2net"} {
		if _, err := m.exec("test ! -e " + d); err != nil {
			t.Errorf("dpkg -P left %s", d)
		}
	}
	check("dpkg -P: /etc/ec2net, /run/ec2net and /var/lib/ec2net removed")
	t.Logf("systemd service test took %v (after the root cache and package build)", time.Since(start).Round(time.Millisecond))
}

func assertRemoved(t *testing.T, m *machine) {
	t.Helper()
	if s := m.unitProperty(unit, "ActiveState"); s == "active" || s == "activating" {
		t.Errorf("after removal the service is %s", s)
	}
	if out, err := m.exec("test ! -e /etc/systemd/system/multi-user.target.wants/" + unit + " && test ! -e /usr/bin/ec2net && test ! -e /usr/lib/systemd/system/" + unit); err != nil {
		t.Errorf("removal left the unit enabled or files behind: %v %s", err, out)
	}
	if out, _ := m.exec("pgrep -x ec2net"); strings.TrimSpace(out) != "" {
		t.Errorf("ec2net still runs after removal (pid %s)", out)
	}
}

func probe(t *testing.T, vpc *vpcsim.VPC, src netip.Addr) vpcsim.ProbeResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := vpc.ProbeTCP(ctx, src)
	if err != nil {
		drops, _ := vpc.Drops()
		t.Fatalf("traffic from %s: %v\nsource/destination check drops:\n%s", src, err, drops)
	}
	if res.SeenSource != src {
		t.Errorf("remote saw %s, want %s", res.SeenSource, src)
	}
	return res
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// hasRule reports whether a "from a" policy rule exists.
func hasRule(nl *netlink.Handle, a netip.Addr) bool {
	rules, err := nl.RuleList(family(a))
	if err != nil {
		return false
	}
	for _, r := range rules {
		if r.Src != nil && r.Src.IP.Equal(net.IP(a.AsSlice())) {
			return true
		}
	}
	return false
}

// hasAddr reports whether a is assigned to some link.
func hasAddr(nl *netlink.Handle, a netip.Addr) bool {
	addrs, err := nl.AddrList(nil, family(a))
	if err != nil {
		return false
	}
	for _, x := range addrs {
		if x.IP.Equal(net.IP(a.AsSlice())) {
			return true
		}
	}
	return false
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
