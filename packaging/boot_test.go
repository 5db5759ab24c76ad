package packaging

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Issue 14, boot: a Debian with the ec2net package installed before its
// first boot, booted by systemd-nspawn in a simulated instance that has 15
// cold-attached secondary ENIs × (50 IPv4 + 50 IPv6). A unit ordered
// After=network-online.target (and wanting it, as a service that needs the
// network does) records the policy rules it finds when it starts.

// onlineProbe is that unit. ip is in the root (nspawn-root.sh).
const onlineProbe = `[Unit]
Description=ec2net test: the rules a unit ordered after network-online.target finds
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'ip -4 rule >/run/online-probe.rules; ip -6 rule >>/run/online-probe.rules'

[Install]
WantedBy=multi-user.target
`

// bootTimes is what one boot measured: CLOCK_MONOTONIC instants in µs
// (systemd's *TimestampMonotonic; the container shares the host's clock)
// and what the probe unit found.
type bootTimes struct {
	execStart, ready, online int64 // ec2net's main process started, READY=1 (active), network-online.target reached
	logged                   int64 // its first log line ("ec2net starting": the daemon's loop runs) reached journald
	probeStart               int64 // the probe unit started
	firstIMDS, lastIMDS      int64 // IMDS requests between execStart and READY
	imdsRequests             int   // requests in that window
	probeRules               int   // ec2net's rules the probe found (tables 10001-10015)
	kernelRules              int   // ec2net's rules in the instance after boot
	journalLines             int   // lines ec2net logged by then
	enis, addrs              int
}

const bootENIs, bootV4, bootV6 = 15, 50, 50

// bootWithColdENIs boots the root with deb installed in a VPC instance
// with the large set of cold-attached ENIs and reads the timeline.
func bootWithColdENIs(t testing.TB, deb, logLevel string) bootTimes {
	nstest.RequireRoot(t)
	requireTools(t, "systemd-nspawn", "nsenter", "debootstrap")
	root := bootRoot(t, deb, logLevel)
	vpc, requests := coldENIsVPC(t)
	m := bootMachine(t, root, vpc.Instance)
	bt := bootTimes{enis: bootENIs, addrs: bootENIs * (bootV4 + bootV6)}
	prop := func(unit, p string) int64 {
		v, err := strconv.ParseInt(m.unitProperty(unit, p), 10, 64)
		if err != nil || v == 0 {
			t.Fatalf("%s %s: %q %v\n%s", unit, p, m.unitProperty(unit, p), err, m.mustExec("systemctl status --no-pager "+unit+" || true"))
		}
		return v
	}
	if s := m.unitProperty(unit, "ActiveState"); s != "active" {
		t.Fatalf("ec2net is %s after boot\n%s", s, m.mustExec("journalctl --no-pager -n 40 -u "+unit))
	}
	bt.execStart = prop(unit, "ExecMainStartTimestampMonotonic")
	bt.ready = prop(unit, "ActiveEnterTimestampMonotonic")
	bt.online = prop("network-online.target", "ActiveEnterTimestampMonotonic")
	bt.probeStart = prop("online-probe.service", "ExecMainStartTimestampMonotonic")
	for _, r := range requests() {
		if r >= bt.execStart && r <= bt.ready {
			if bt.firstIMDS == 0 {
				bt.firstIMDS = r
			}
			bt.lastIMDS = r
			bt.imdsRequests++
		}
	}
	bt.probeRules = strings.Count(m.mustExec("cat /run/online-probe.rules"), "lookup 100")
	bt.journalLines = strings.Count(m.mustExec("journalctl --no-pager -o cat -u "+unit), "\n")
	bt.logged = firstLogLine(t, m)
	bt.kernelRules = coldENIRules(t, vpc)
	return bt
}

// bootRoot is an overlay of the cached Debian root with deb installed
// (enabled for first boot, not started), the probe unit enabled and, if
// logLevel is set, a configuration drop-in with it.
func bootRoot(t testing.TB, deb, logLevel string) string {
	root := overlayRoot(t)
	mustRun(t, "dpkg", "--root="+root, "-i", deb)
	unitDir := filepath.Join(root, "etc/systemd/system")
	must(t, os.WriteFile(filepath.Join(unitDir, "online-probe.service"), []byte(onlineProbe), 0o644))
	must(t, os.MkdirAll(filepath.Join(unitDir, "multi-user.target.wants"), 0o755))
	must(t, os.Symlink("/etc/systemd/system/online-probe.service", filepath.Join(unitDir, "multi-user.target.wants/online-probe.service")))
	if logLevel != "" {
		dropins := filepath.Join(root, "etc/ec2net/ec2net.conf.d")
		must(t, os.MkdirAll(dropins, 0o755))
		must(t, os.WriteFile(filepath.Join(dropins, "50-bench.conf"), []byte("log-level = "+logLevel+"\n"), 0o644))
	}
	return root
}

// coldENIsVPC is an instance with its primary ENI and the large set of
// secondary ENIs attached; requests returns the instants (CLOCK_MONOTONIC
// µs) of the IMDS requests so far: the fake asks its clock on each one
// (tokens, propagation windows).
func coldENIsVPC(t testing.TB) (vpc *vpcsim.VPC, requests func() []int64) {
	vpc = vpcsim.NewForTestOptions(t, vpcsim.Options{Prefix: "ec2bt", Logf: func(string, ...any) {}})
	must(t, vpc.AddSubnet(pkgSubnetA, pkgSubnetA6))
	must(t, vpc.LaunchPrimary(pkgPrimary))
	subnets, enis, err := vpcsim.LargeENIs(0xb7, bootENIs, bootV4, bootV6)
	must(t, err)
	for _, s := range subnets {
		must(t, vpc.AddSubnet(s.IPv4, s.IPv6))
	}
	for _, e := range enis {
		must(t, vpc.Attach(e))
	}
	var mu sync.Mutex
	var reqs []int64
	vpc.IMDS.SetClock(func() time.Time {
		mu.Lock()
		reqs = append(reqs, monotonicMicros())
		mu.Unlock()
		return time.Now()
	})
	return vpc, func() []int64 {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(reqs)
	}
}

// coldENIRules counts the rules of the cold-attached ENIs' tables.
func coldENIRules(t testing.TB, vpc *vpcsim.VPC) int {
	nsh, err := vpc.Handle(vpc.Instance)
	must(t, err)
	nl, err := netlink.NewHandleAt(nsh)
	must(t, err)
	defer nl.Close()
	n := 0
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := nl.RuleList(fam)
		must(t, err)
		for _, r := range rules {
			if r.Table > 10000 && r.Table <= 10000+bootENIs {
				n++
			}
		}
	}
	return n
}

// firstLogLine is when journald received ec2net's first line, "ec2net
// starting" (short-monotonic: "[   12.345678] host ec2net[1]: ..."), in
// CLOCK_MONOTONIC µs; 0 when it logs only warnings.
func firstLogLine(t testing.TB, m *machine) int64 {
	out := m.mustExec("journalctl --no-pager -o short-monotonic -u " + unit + " | grep -m1 'ec2net starting' || true")
	open, end := strings.IndexByte(out, '['), strings.IndexByte(out, ']')
	if open < 0 || end < open {
		return 0
	}
	sec, err := strconv.ParseFloat(strings.TrimSpace(out[open+1:end]), 64)
	must(t, err)
	return int64(sec * 1e6)
}

func monotonicMicros() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano() / 1000
}

func (bt bootTimes) ms(from, to int64) float64 { return float64(to-from) / 1000 }

// ENIs attached at boot are configured before network-online.target
// whenever IMDS answers: a unit ordered after it finds every rule, and
// ec2net was active (READY=1, after its first reconcile) before the
// target was reached.
func TestBootConfiguresColdENIsBeforeNetworkOnline(t *testing.T) {
	bt := bootWithColdENIs(t, packages(t).Deb, "")
	want := bt.addrs
	if bt.kernelRules != want {
		t.Errorf("%d rules of the cold-attached ENIs after boot, want %d", bt.kernelRules, want)
	}
	if bt.probeRules != want {
		t.Errorf("a unit ordered after network-online.target found %d of the %d rules", bt.probeRules, want)
	}
	if bt.online < bt.ready {
		t.Errorf("network-online.target reached %.1f ms before ec2net was ready", bt.ms(bt.online, bt.ready))
	}
	if bt.imdsRequests == 0 {
		t.Errorf("no IMDS request between ec2net's start and READY=1")
	}
	t.Logf("unit start -> READY=1 %.0f ms (IMDS %.0f ms, %d requests); network-online.target %.0f ms after READY; the probe unit found %d rules",
		bt.ms(bt.execStart, bt.ready), bt.ms(bt.firstIMDS, bt.lastIMDS), bt.imdsRequests, bt.ms(bt.ready, bt.online), bt.probeRules)
}

// BenchmarkBoot measures, in the boot above, ec2net's unit start
// (ExecMainStartTimestamp) to READY=1 (ActiveEnterTimestamp) and where
// that time goes: from the start to its first log line (the sandbox
// systemd sets up, the Go runtime, configuration, the netlink
// subscription: the loop runs), to its first IMDS request, the IMDS reads
// (first to last request before READY), and from the last request to
// READY (the netlink apply of 15 × 100 addresses, rules and routes, the
// ownership record, and one log line per change to journald). Also when
// network-online.target was reached after READY. Two boots: the packaged
// configuration, and with log-level = warn (what the per-change log lines
// cost). make bench: -benchtime 1x; the package is built once, release 1
// only.
func BenchmarkBoot(b *testing.B) {
	deb := oneDeb(b)
	for _, level := range []string{"info", "warn"} {
		b.Run("log="+level, func(b *testing.B) {
			var all []bootTimes
			for range b.N {
				bt := bootWithColdENIs(b, deb, level)
				if bt.probeRules != bt.addrs || bt.kernelRules != bt.addrs {
					b.Fatalf("boot: the probe found %d rules, the kernel has %d, want %d", bt.probeRules, bt.kernelRules, bt.addrs)
				}
				all = append(all, bt)
			}
			reportBoot(b, all)
		})
	}
}

func reportBoot(b *testing.B, all []bootTimes) {
	med := func(f func(bootTimes) float64) float64 {
		v := make([]float64, len(all))
		for i, bt := range all {
			v[i] = f(bt)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	b.ReportMetric(med(func(bt bootTimes) float64 { return bt.ms(bt.execStart, bt.ready) }), "start-to-ready-ms")
	if all[0].logged != 0 {
		b.ReportMetric(med(func(bt bootTimes) float64 { return bt.ms(bt.execStart, bt.logged) }), "start-to-log-ms")
		b.ReportMetric(med(func(bt bootTimes) float64 { return bt.ms(bt.logged, bt.firstIMDS) }), "log-to-imds-ms")
	}
	b.ReportMetric(med(func(bt bootTimes) float64 { return bt.ms(bt.execStart, bt.firstIMDS) }), "start-to-imds-ms")
	b.ReportMetric(med(func(bt bootTimes) float64 { return bt.ms(bt.firstIMDS, bt.lastIMDS) }), "imds-ms")
	b.ReportMetric(med(func(bt bootTimes) float64 { return bt.ms(bt.lastIMDS, bt.ready) }), "apply-to-ready-ms")
	b.ReportMetric(med(func(bt bootTimes) float64 { return float64(bt.imdsRequests) }), "imds-req")
	b.ReportMetric(med(func(bt bootTimes) float64 { return bt.ms(bt.ready, bt.online) }), "ready-to-online-ms")
	b.ReportMetric(med(func(bt bootTimes) float64 { return float64(bt.journalLines) }), "journal-lines")
	b.ReportMetric(float64(all[0].addrs), "addresses")
	b.ReportMetric(0, "ns/op")
}

var (
	debOnce sync.Once
	debPath string
	debErr  error
)

// oneDeb builds the .deb once (one release: what the benchmark needs).
func oneDeb(t testing.TB) string {
	t.Helper()
	debOnce.Do(func() {
		dir := filepath.Join(scratch, "bench")
		if _, debErr = command(t.Context(), nil, "bash", "packaging/build.sh", dir); debErr == nil {
			debPath, _, debErr = packagePaths(dir)
		}
	})
	if debErr != nil {
		t.Fatalf("packaging/build.sh: %v", debErr)
	}
	return debPath
}
