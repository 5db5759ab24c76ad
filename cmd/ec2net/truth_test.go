package main

// The truth about every address, end to end: status and doctor against
// real traffic in the simulated VPC.

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// quietHost points the host checks at an empty root: the test machine's
// own network manager is not the simulated instance's.
func quietHost(t *testing.T) {
	t.Setenv("EC2NET_TEST_HOST_ROOT", t.TempDir())
}

func (b *bed) trafficFrom(a netip.Addr) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := b.vpc.ProbeTCP(ctx, a)
	return err
}

// statusDoc is the part of status --json the tests read.
type statusDoc struct {
	Version int  `json:"version"`
	Healthy bool `json:"healthy"`
	ENIs    []struct {
		Link      string `json:"link"`
		State     string `json:"state"`
		Reason    string `json:"reason"`
		Addresses []struct {
			Address string `json:"address"`
			State   string `json:"state"`
			Cause   string `json:"cause"`
			Path    string `json:"path"`
		} `json:"addresses"`
	} `json:"enis"`
	Daemon struct {
		Running bool   `json:"running"`
		Summary string `json:"summary"`
	} `json:"daemon"`
}

// A foreign rule of higher priority shadows one secondary address: its
// traffic fails; status says shadowed, names the rule and exits 2 (the
// ENI in full with `status eth1`, the same in JSON); doctor names the
// rule; with the rule gone, status is back to 0.
func TestStatusAndDoctorNameAShadowingRule(t *testing.T) {
	quietHost(t)
	b := newBed(t, "e2esh")
	if _, code := b.ec2net("apply", "--wait", "10s"); code != 0 {
		t.Fatalf("apply exit %d", code)
	}
	victim := b.eth1.IPv4[1]
	out, code := b.ec2net("status")
	if code != 0 || !strings.Contains(out, "daemon: not running") {
		t.Fatalf("status before: exit %d\n%s", code, out)
	}
	rule := "from " + victim.String() + " lookup main pref 100"
	b.ip(append([]string{"rule", "add"}, strings.Fields(rule)...)...)
	if err := b.trafficFrom(victim); err == nil {
		t.Fatalf("traffic from %s passes although a rule sends it through eth0", victim)
	}

	out, code = b.ec2net("status")
	if code != 2 || !strings.Contains(out, "shadowed") || !strings.Contains(out, rule) {
		t.Errorf("status with the shadowing rule: exit %d, want 2 naming the rule:\n%s", code, out)
	}
	out, code = b.ec2net("status", "eth1")
	if code != 2 || !strings.Contains(out, "addresses (the kernel's route lookup from each)") ||
		!regexp.MustCompile(regexp.QuoteMeta(victim.String())+`\s+shadowed\s+via 100.64.1.1 dev eth0 table main`).MatchString(out) || !strings.Contains(out, "via 100.64.2.1 dev eth1 table 10001") {
		t.Errorf("status eth1: exit %d\n%s", code, out)
	}
	out, code = b.ec2net("status", "--json")
	var doc statusDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 2 {
		t.Fatalf("status --json: exit %d, %v\n%s", code, err, out)
	}
	if strings.Contains(out, "null") || doc.Healthy || doc.Version != jsonVersion || doc.Daemon.Running {
		t.Errorf("status --json shape: %s", out)
	}
	found := false
	for _, e := range doc.ENIs {
		for _, a := range e.Addresses {
			if a.Address == victim.String() {
				found = a.State == "shadowed" && strings.Contains(a.Cause, rule) && e.State == "shadowed"
			} else if a.State != "configured" {
				t.Errorf("%s %s: %s (%s)", e.Link, a.Address, a.State, a.Cause)
			}
		}
	}
	if !found {
		t.Errorf("status --json does not show %s shadowed by the rule:\n%s", victim, out)
	}

	out, code = b.ec2net("doctor")
	if code != 1 || !strings.Contains(out, "PROBLEM") || !strings.Contains(out, rule) || !strings.Contains(out, "delete it or give it a priority after 10001") {
		t.Errorf("doctor: exit %d, want 1 naming the rule and the fix:\n%s", code, out)
	}

	b.ip(append([]string{"rule", "del"}, strings.Fields(rule)...)...)
	if out, code = b.ec2net("status"); code != 0 || strings.Contains(out, "shadowed") {
		t.Errorf("status after the rule is gone: exit %d\n%s", code, out)
	}
	if err := b.trafficFrom(victim); err != nil {
		t.Errorf("traffic from %s after the rule is gone: %v", victim, err)
	}
	out, _ = b.ec2net("doctor")
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "PROBLEM") && !strings.Contains(l, "daemon") {
			t.Errorf("doctor still reports: %s", l)
		}
	}
}

// With the daemon running and every path right, doctor finds nothing to
// do and exits 0; status shows the daemon; the support bundle holds the
// status, rules and routes and nothing secret.
func TestDoctorHealthyWithDaemonAndBundle(t *testing.T) {
	quietHost(t)
	b := newBed(t, "e2edr")
	const marker = "USER-DATA-MARKER-7f3a"
	b.vpc.IMDS.Set("/latest/user-data", marker)
	b.startDaemon(t)
	want := len(b.secondaryAddrs()) + 1
	waitFor(t, 15*time.Second, func() bool { return strings.Count(b.ownedRules(), "proto 236") == want })

	var out string
	var code int
	waitFor(t, 15*time.Second, func() bool {
		out, code = b.ec2net("doctor")
		return code == 0
	})
	if !strings.Contains(out, "IMDSv2 is enforced") || !strings.Contains(out, "daemon: running (pid") || strings.Contains(out, "PROBLEM") {
		t.Errorf("doctor on a healthy instance: exit %d\n%s", code, out)
	}
	if out, code := b.ec2net("status"); code != 0 || !strings.Contains(out, "daemon: running (pid") || !strings.Contains(out, "last IMDS read") {
		t.Errorf("status with the daemon: exit %d\n%s", code, out)
	}

	bundle := filepath.Join(t.TempDir(), "support.tar.gz")
	if _, code := b.ec2net("doctor", "--bundle", bundle); code != 0 {
		t.Errorf("doctor --bundle: exit %d", code)
	}
	files := readTarGz(t, bundle)
	for _, name := range []string{"README.txt", "doctor.txt", "status.json", "rules.txt", "routes.txt", "addrs.txt", "config.txt", "versions.txt", "daemon.json", "metrics.prom", "journal.txt"} {
		if _, ok := files[name]; !ok {
			t.Errorf("bundle lacks %s (has %v)", name, keys(files))
		}
	}
	if !strings.Contains(files["rules.txt"], "lookup 10001") || !strings.Contains(files["routes.txt"], "table 10001") ||
		!strings.Contains(files["status.json"], `"state": "configured"`) || !strings.Contains(files["metrics.prom"], "ec2net_enis") {
		t.Errorf("bundle contents:\nrules: %s\nstatus: %s", files["rules.txt"], files["status.json"])
	}
	for name, content := range files {
		if strings.Contains(content, marker) {
			t.Errorf("%s holds the user data", name)
		}
	}
	if n := b.vpc.IMDS.Requests("/latest/user-data"); n != 0 {
		t.Errorf("ec2net read user data %d times", n)
	}
	if fi, err := os.Stat(bundle); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("bundle mode %v %v", fi.Mode(), err)
	}
}

func readTarGz(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	gz, err := gzip.NewReader(f)
	must(t, err)
	tr := tar.NewReader(gz)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		must(t, err)
		b, err := io.ReadAll(tr)
		must(t, err)
		out[filepath.Base(h.Name)] = string(b)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// The other ways a path breaks, each with real traffic failing: status
// exits 2 naming the cause, doctor reports a problem saying the same, and
// undoing it (with an apply where ec2net's own objects went too) brings
// status back to 0.
func TestStatusAndDoctorOnBrokenPaths(t *testing.T) {
	quietHost(t)
	b := newBed(t, "e2ebp")
	if _, code := b.ec2net("apply", "--wait", "10s"); code != 0 {
		t.Fatalf("apply exit %d", code)
	}
	sysctl := func(v string) {
		for _, k := range []string{"all", "eth1"} {
			must(t, b.vpc.Sysctl(b.vpc.Instance, "net.ipv4.conf."+k+".rp_filter", v))
		}
	}
	for _, c := range []struct {
		name        string
		victim      netip.Addr
		inbound     bool // the failure shows on traffic into the address
		state, says string
		statusSays  string // in the status table ("" : says)
		breakIt     func()
		undo        func()
	}{
		{"link down", b.eth2.IPv4[0], false, "down", "eth2 is administratively down", "set down by an administrator",
			func() { b.ip("link", "set", "eth2", "down") },
			func() { b.ip("link", "set", "eth2", "up") }},
		{"strict rp_filter, misrouted reply", b.eth1.IPv4[2], true, "rp-filter", "strict rp_filter", "",
			func() {
				sysctl("1")
				b.ip("rule", "add", "from", b.eth1.IPv4[2].String(), "lookup", "main", "pref", "200")
			},
			func() {
				b.ip("rule", "del", "from", b.eth1.IPv4[2].String(), "lookup", "main", "pref", "200")
				sysctl("0")
			}},
		{"foreign default in the ENI's table", b.eth2.IPv4[1], false, "wrong-path", "default via 100.64.1.1 dev eth0 table 10002 proto static", "",
			func() {
				b.ip("route", "replace", "default", "via", "100.64.1.1", "dev", "eth0", "table", "10002", "proto", "static")
			},
			func() { b.ip("route", "del", "default", "table", "10002", "proto", "static") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.breakIt()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			var err error
			if c.inbound {
				_, err = b.vpc.ProbeInbound(ctx, c.victim)
			} else {
				_, err = b.vpc.ProbeTCP(ctx, c.victim)
			}
			cancel()
			if err == nil {
				t.Errorf("traffic with %s passes: nothing is broken", c.victim)
			}
			out, code := b.ec2net("status")
			says := c.statusSays
			if says == "" {
				says = c.says
			}
			if code != 2 || !strings.Contains(out, c.state) || !strings.Contains(out, says) {
				t.Errorf("status: exit %d, want 2 with %q and %q:\n%s", code, c.state, says, out)
			}
			out, code = b.ec2net("doctor")
			line := ""
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "PROBLEM") && strings.Contains(l, c.victim.String()+" is "+c.state) {
					line = l
				}
			}
			if code != 1 || !strings.Contains(line, c.says) {
				t.Errorf("doctor: exit %d, want a PROBLEM line for %s saying %q:\n%s", code, c.victim, c.says, out)
			}
			c.undo()
			if _, code := b.ec2net("apply"); code != 0 {
				t.Fatalf("apply after undoing: exit %d", code)
			}
			if out, code := b.ec2net("status"); code != 0 {
				t.Errorf("status after undoing: exit %d\n%s", code, out)
			}
			b.assertTraffic([]netip.Addr{c.victim})
		})
	}
}
