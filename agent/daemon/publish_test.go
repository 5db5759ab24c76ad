package daemon

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/logging"
	"github.com/ec2net/ec2net/netconf"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"
)

// metric reads one series from the daemon's metrics file (-1 when the
// file or the series is missing).
func metric(t testing.TB, stateDir, name string, labels ...string) float64 {
	t.Helper()
	b, err := os.ReadFile(MetricsFile(stateDir))
	if err != nil {
		return -1
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("metrics file does not parse: %v\n%s", err, b)
	}
	mf := mfs[name]
	if mf == nil {
		return -1
	}
	for _, m := range mf.GetMetric() {
		if hasLabels(m, labels) {
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			if m.Histogram != nil {
				return float64(m.Histogram.GetSampleCount())
			}
			return m.Gauge.GetValue()
		}
	}
	return -1
}

func hasLabels(m *dto.Metric, labels []string) bool {
	have := map[string]string{}
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for i := 0; i+1 < len(labels); i += 2 {
		if have[labels[i]] != labels[i+1] {
			return false
		}
	}
	return true
}

func metricIs(t testing.TB, dir string, want float64, name string, labels ...string) func() error {
	return func() error {
		if v := metric(t, dir, name, labels...); v != want {
			return fmt.Errorf("%s%v = %v, want %v", name, labels, v, want)
		}
		return nil
	}
}

// The daemon publishes its runtime file and metrics; counters move as
// events happen; a broken path shows in the ENI gauges and is logged once
// at warning with the ENI's fields, its healing once at info; stopping is
// published too.
func TestPublishesRuntimeMetricsAndPathChanges(t *testing.T) {
	var dir string
	core, logs := observer.New(zapcore.InfoLevel)
	h := startHarnessWith(t, "dmpub", func(c *config.Config) {
		c.RefreshInterval = time.Hour
		c.MetricsListen = "127.0.0.1:0"
	}, func(o *Options) {
		dir = o.Reconciler.StateDir()
		o.Logger = zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
	})
	must(t, h.vpc.Attach(eth1))
	eventually(t, 10*time.Second, "configured", h.allPass(allAddrs(eth1)))

	rt, err := ReadRuntime(dir)
	if err != nil || rt.PID != os.Getpid() || rt.LastRead.IsZero() || rt.Reconciles["imds"] < 1 || rt.Version != RuntimeVersion {
		t.Fatalf("runtime file: %+v %v", rt, err)
	}
	if lv := Live(dir); lv.PID != os.Getpid() || !strings.Contains(lv.Summary(time.Now()), "daemon: running (pid") ||
		!strings.Contains(lv.Summary(time.Now()), "last IMDS read") {
		t.Errorf("liveness %+v: %s", lv, lv.Summary(time.Now()))
	}
	// eth0's two addresses and eth1's five, each verified.
	eventually(t, 10*time.Second, "every ENI verified", metricIs(t, dir, 2, "ec2net_enis", "state", "configured"))
	eventually(t, 5*time.Second, "addresses verified", metricIs(t, dir, 7, "ec2net_addresses", "kind", "verified"))
	if v := metric(t, dir, "ec2net_imds_request_duration_seconds"); v < float64(rt.IMDS.Requests) || v < 1 {
		t.Errorf("%v IMDS latencies observed, %d requests published before", v, rt.IMDS.Requests)
	}

	// A rule deleted by someone else: one repair of kind rule.
	rules, err := h.nl.RuleList(unix.AF_INET)
	must(t, err)
	for i := range rules {
		if rules[i].Protocol == netconf.Protocol && rules[i].Table == 10001 {
			must(t, h.nl.RuleDel(&rules[i]))
			break
		}
	}
	eventually(t, 5*time.Second, "repair counted", metricIs(t, dir, 1, "ec2net_repairs_total", "kind", "rule"))
	eventually(t, 5*time.Second, "repair pass counted", metricIs(t, dir, 1, "ec2net_reconciles_total", "trigger", "repair"))
	if rt, _ := ReadRuntime(dir); rt == nil || rt.Repairs["rule"] != 1 || rt.RepairsSince(time.Now().Add(-time.Hour)) != 1 {
		t.Errorf("runtime repairs: %+v", rt)
	}

	// A foreign rule of higher priority shadows one address.
	shadow := netlink.NewRule()
	shadow.Priority, shadow.Table, shadow.Family = 100, unix.RT_TABLE_MAIN, unix.AF_INET
	shadow.Src = &net.IPNet{IP: eth1.IPv4[1].AsSlice(), Mask: net.CIDRMask(32, 32)}
	must(t, h.nl.RuleAdd(shadow))
	eventually(t, 10*time.Second, "shadowed ENI counted", metricIs(t, dir, 1, "ec2net_enis", "state", "shadowed"))
	broken := logs.FilterMessageSnippet("address off its path").All()
	if len(broken) != 1 || broken[0].Level != zapcore.WarnLevel || broken[0].ContextMap()["link"] != "eth1" ||
		broken[0].ContextMap()["message_id"] != logging.MsgPathBroken || !strings.Contains(broken[0].Message, eth1.IPv4[1].String()) {
		t.Errorf("path break log lines: %+v", broken)
	}
	must(t, h.nl.RuleDel(shadow))
	eventually(t, 10*time.Second, "healed", metricIs(t, dir, 2, "ec2net_enis", "state", "configured"))
	if healed := logs.FilterMessage("every address back on its path").All(); len(healed) != 1 || healed[0].ContextMap()["was"] != "shadowed" {
		t.Errorf("healing log lines: %+v", healed)
	}
	if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 0 {
		t.Errorf("%d lines at error level: %+v", n, logs.FilterLevelExact(zapcore.ErrorLevel).All())
	}

	h.stop()
	rt, err = ReadRuntime(dir)
	if err != nil || rt.Stopped.IsZero() {
		t.Errorf("stop not published: %+v %v", rt, err)
	}
	if lv := Live(dir); lv.PID != 0 || !strings.Contains(lv.Summary(time.Now()), "daemon: not running (stopped") {
		t.Errorf("after stop: %+v %s", lv, lv.Summary(time.Now()))
	}
}

func TestLivenessSummaries(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	rt := newRuntime("1.0", now.Add(-3*time.Hour))
	rt.PID = 42
	rt.LastRead = now.Add(-12 * time.Second)
	rt.LastReconcile = now.Add(-3 * time.Second)
	rt.noteRepair(now.Add(-2 * time.Hour))
	rt.noteRepair(now.Add(-10 * time.Minute))
	for _, c := range []struct {
		lv   Liveness
		want string
	}{
		{Liveness{PID: 42, Runtime: &rt}, "last IMDS read 12 s ago, last reconcile 3 s ago, 1 repairs in the last hour"},
		{Liveness{PID: 0}, "daemon: not running"},
		{Liveness{PID: 7, Runtime: &rt}, "daemon: running (pid 7), nothing published yet"},
		{Liveness{Err: os.ErrPermission}, "run as root"},
	} {
		if got := c.lv.Summary(now); !strings.Contains(got, c.want) {
			t.Errorf("%+v: %q lacks %q", c.lv, got, c.want)
		}
	}
}

// A competing network manager is logged once, at warning, with its fix.
func TestLogsCompetingManagerOnce(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(root+"/proc/1", 0o755))
	must(t, os.WriteFile(root+"/proc/1/comm", []byte("systemd-network\n"), 0o644))
	t.Setenv("EC2NET_TEST_HOST_ROOT", root)
	core, logs := observer.New(zapcore.InfoLevel)
	var dir string
	h := startHarnessWith(t, "dmhost", func(c *config.Config) { c.RefreshInterval = time.Hour }, func(o *Options) {
		dir = o.Reconciler.StateDir()
		o.Logger = zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
	})
	must(t, h.vpc.Attach(eth1))
	eventually(t, 10*time.Second, "configured", h.allPass(allAddrs(eth1)))
	eventually(t, 5*time.Second, "networkd logged", func() error {
		if n := logs.FilterField(zap.String("check", "networkd")).Len(); n != 1 {
			return fmt.Errorf("%d networkd lines", n)
		}
		return nil
	})
	l := logs.FilterField(zap.String("check", "networkd")).All()[0]
	if l.Level != zapcore.WarnLevel || l.ContextMap()["message_id"] != logging.MsgHostCheck ||
		!strings.Contains(l.ContextMap()["fix"].(string), "ManageForeignRoutingPolicyRules=no") {
		t.Errorf("networkd line: %+v", l)
	}
	// Later verifications do not repeat it.
	rt, err := ReadRuntime(dir)
	must(t, err)
	h.sigs <- syscall.SIGHUP
	eventually(t, 5*time.Second, "a later verification", func() error {
		if now, err := ReadRuntime(dir); err != nil || !now.LastVerified.After(rt.LastVerified) {
			return fmt.Errorf("last verified %v (was %v): %v", now.LastVerified, rt.LastVerified, err)
		}
		return nil
	})
	if n := logs.FilterField(zap.String("check", "networkd")).Len(); n != 1 {
		t.Errorf("networkd logged %d times", n)
	}
}

// A .network that matches secondary ENIs by driver (AL2023's
// 80-ec2.network matches Driver=ena ixgbevf vif; the simulator's ENIs are
// veths) is reported by the daemon too: it reads the links' drivers in
// its namespace.
func TestLogsNetworkFileMatchingByDriver(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(root+"/proc/1", 0o755))
	must(t, os.WriteFile(root+"/proc/1/comm", []byte("systemd-network\n"), 0o644))
	must(t, os.MkdirAll(root+"/usr/lib/systemd/network", 0o755))
	must(t, os.WriteFile(root+"/usr/lib/systemd/network/80-ec2.network", []byte("[Match]\nDriver=veth\n\n[Network]\nDHCP=yes\n"), 0o644))
	t.Setenv("EC2NET_TEST_HOST_ROOT", root)
	core, logs := observer.New(zapcore.InfoLevel)
	h := startHarnessWith(t, "dmdrv", func(c *config.Config) { c.RefreshInterval = time.Hour }, func(o *Options) {
		o.Logger = zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
	})
	must(t, h.vpc.Attach(eth1))
	eventually(t, 10*time.Second, "eth1 reported as managed by networkd", func() error {
		for _, l := range logs.FilterField(zap.String("check", "networkd")).All() {
			if l.ContextMap()["link"] == "eth1" && strings.Contains(l.Message, "80-ec2.network") {
				return nil
			}
		}
		return fmt.Errorf("no networkd line for eth1")
	})
}
