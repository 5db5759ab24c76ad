package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/ec2net/ec2net/netconf/ipbatch"
	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
	"github.com/vishvananda/netlink"
)

// Issue 14: a cold `ec2net apply` of a large instance, end to end: the
// binary started in the instance namespace, IMDS read through the VPC
// router (a new process: new token, new connections, nothing cached),
// 15 secondary ENIs × (50 IPv4 + 50 IPv6) configured. The anchor is
// `ip -batch` of the same objects (what `ec2net plan` prints for the
// same fresh links, as netconf's benchmark turns a plan into ip
// commands; IPv6 rules in a second `ip -6 -batch`; the 15 accept_ra
// sysctls, which ip cannot set, written in-process), which knows
// nothing of IMDS. Goal: ec2net ≤ 1.0× ip -batch. Both start from fresh
// links (down, no addresses: every ENI is detached and attached again
// between runs); each result is checked (a plan afterwards lists
// nothing to do).
//
// make bench runs it with -benchtime 1x: 5 runs of each, interleaved
// (EC2NET_BENCH_SAMPLES).
func BenchmarkColdApply15x100(b *testing.B) {
	cb := newColdBed(b)
	// Once, untimed: the primary ENI's altnames, which later runs find
	// in place (only the secondaries get fresh links).
	cb.apply(b.TempDir())
	cb.reattach()
	batch4, batch6, sysctls := cb.ipBatches()
	n := 5
	if s, err := strconv.Atoi(os.Getenv("EC2NET_BENCH_SAMPLES")); err == nil && s > 0 {
		n = s
	}
	n *= b.N
	var ec2net, ipb, plan, read, proc time.Duration
	b.ResetTimer()
	for range n {
		// Where ec2net's time goes, untimed: the same process without
		// writes (plan: IMDS, kernel dump, plan), IMDS alone (a cold
		// client in this process, through the router), and a process
		// that does nothing (ec2net defaults).
		b.StopTimer()
		start := time.Now()
		cb.plan(b.TempDir())
		plan += time.Since(start)
		read += cb.coldRead()
		start = time.Now()
		_, err := cb.vpc.Exec(cb.vpc.Instance, ec2netBin, "defaults")
		must(b, err)
		proc += time.Since(start)
		b.StartTimer()

		b.StopTimer()
		state := b.TempDir()
		b.StartTimer()
		ec2net += cb.apply(state)
		b.StopTimer()
		cb.checkDone(state)
		cb.reattach()
		b.StartTimer()

		start = time.Now()
		cb.runBatch(batch4)
		cb.runBatch(batch6, "-6")
		cb.writeSysctls(sysctls)
		ipb += time.Since(start)
		b.StopTimer()
		cb.checkDone(b.TempDir())
		cb.reattach()
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(ec2net.Microseconds())/1000/float64(n), "ec2net-ms")
	b.ReportMetric(float64(ipb.Microseconds())/1000/float64(n), "ip-batch-ms")
	b.ReportMetric(float64(ec2net)/float64(ipb), "ratio")
	b.ReportMetric(float64(plan.Microseconds())/1000/float64(n), "plan-ms")
	b.ReportMetric(float64(read.Microseconds())/1000/float64(n), "imds-read-ms")
	b.ReportMetric(float64(proc.Microseconds())/1000/float64(n), "process-ms")
	b.ReportMetric(float64(n), "samples")
	b.ReportMetric(0, "ns/op")
}

type coldBed struct {
	b    *testing.B
	vpc  *vpcsim.VPC
	enis []vpcsim.ENISpec
	dir  string
}

// newColdBed is an instance with a primary ENI and 15 secondary ENIs in
// five dual-stack subnets (three per /24), each with 50 IPv4 and 50 IPv6
// addresses, attached (links down, no addresses).
func newColdBed(b *testing.B) *coldBed {
	nstest.RequireRoot(b)
	vpc := vpcsim.NewForTestOptions(b, vpcsim.Options{Prefix: "bmcold", Logf: func(string, ...any) {}})
	cb := &coldBed{b: b, vpc: vpc, dir: b.TempDir()}
	must(b, vpc.AddSubnet(subnetA, subnetA6))
	must(b, vpc.LaunchPrimary(vpcsim.ENISpec{Name: "eth0", MAC: "02:ec:20:00:cc:00", ID: "eni-0c0000000000000c00",
		SubnetIPv4: subnetA, IPv4: vpcsim.Addrs("100.64.1.10")}))
	subnets, enis, err := vpcsim.LargeENIs(0xcc, 15, 50, 50)
	must(b, err)
	for _, s := range subnets {
		must(b, vpc.AddSubnet(s.IPv4, s.IPv6))
	}
	for _, e := range enis {
		must(b, vpc.Attach(e))
	}
	cb.enis = enis
	return cb
}

// coldRead times one IMDS snapshot by a new client (new token, new
// connections, nothing cached) from inside the instance, with ec2net's
// defaults.
func (cb *coldBed) coldRead() time.Duration {
	h, err := cb.vpc.Handle(cb.vpc.Instance)
	must(cb.b, err)
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := nsutil.Do(h, func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}, MaxIdleConnsPerHost: imds.DefaultConcurrency + 1}
	defer tr.CloseIdleConnections()
	c, err := imds.New(imds.Options{Endpoint: "http://169.254.169.254", HTTPClient: &http.Client{Transport: tr}})
	must(cb.b, err)
	start := time.Now()
	snap, err := c.Snapshot(context.Background())
	took := time.Since(start)
	if err != nil || len(snap.ENIs) != 16 {
		cb.b.Fatalf("cold snapshot: %v (%d ENIs)", err, len(snap.ENIs))
	}
	return took
}

// apply runs `ec2net apply` in the instance and returns how long the
// process took, start to exit.
func (cb *coldBed) apply(state string) time.Duration {
	start := time.Now()
	out, err := cb.vpc.ExecContext(context.Background(), cb.vpc.Instance, ec2netBin, "apply",
		"--imds-endpoint", "http://169.254.169.254", "--state-dir", state, "--config", "/dev/null")
	took := time.Since(start)
	if err != nil {
		cb.b.Fatalf("ec2net apply: %v\n%.2000s", err, out)
	}
	return took
}

// reattach detaches and attaches every secondary ENI again: fresh links,
// and no rule of theirs (rules outlive links).
func (cb *coldBed) reattach() {
	h, err := cb.vpc.Handle(cb.vpc.Instance)
	must(cb.b, err)
	nl, err := netlink.NewHandleAt(h)
	must(cb.b, err)
	defer nl.Close()
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := nl.RuleList(fam)
		must(cb.b, err)
		for i := range rules {
			if rules[i].Table > 10000 && rules[i].Table <= 10015 {
				must(cb.b, nl.RuleDel(&rules[i]))
			}
		}
	}
	for _, e := range cb.enis {
		must(cb.b, cb.vpc.Detach(e.MAC))
		must(cb.b, cb.vpc.Attach(e))
	}
}

// plan returns what `ec2net plan` would change (one change per line,
// without its sign: + add, ~ set, - delete) and the plan's full text.
func (cb *coldBed) plan(state string) ([]string, string) {
	out, err := cb.vpc.ExecContext(context.Background(), cb.vpc.Instance, ec2netBin, "plan",
		"--imds-endpoint", "http://169.254.169.254", "--state-dir", state, "--config", "/dev/null")
	if err != nil {
		cb.b.Fatalf("ec2net plan: %v\n%s", err, out)
	}
	var changes []string
	for _, l := range strings.Split(out, "\n") {
		if len(l) > 2 && strings.ContainsRune("+~-", rune(l[0])) && l[1] == ' ' {
			changes = append(changes, l[2:]) // + add, ~ set, - delete
		}
	}
	return changes, out
}

// checkDone fails unless the instance holds everything ec2net wants
// (a plan lists no change) and the 1,500 addresses' rules are there.
func (cb *coldBed) checkDone(state string) {
	changes, out := cb.plan(state)
	if len(changes) != 0 {
		cb.b.Fatalf("%d changes still to make, first %q:\n%.2000s", len(changes), changes[0], out)
	}
	rules, err := cb.vpc.Exec(cb.vpc.Instance, "sh", "-c", "ip -4 rule; ip -6 rule")
	must(cb.b, err)
	if n := strings.Count(rules, "lookup 100"); n != 1500 { // tables 10001-10015
		cb.b.Fatalf("%d rules of ec2net, want 1500:\n%s", n, rules)
	}
}

// ipBatches turns the plan for fresh links into `ip -batch` files
// (ipbatch.Split) and the sysctls ip cannot set.
func (cb *coldBed) ipBatches() (batch4, batch6 string, sysctls []string) {
	changes, _ := cb.plan(cb.b.TempDir())
	if len(changes) < 3000 {
		cb.b.Fatalf("the plan for fresh links has %d changes; want over 3000", len(changes))
	}
	m, r6, sysctls := ipbatch.Split(changes)
	batch4, batch6 = filepath.Join(cb.dir, "batch"), filepath.Join(cb.dir, "batch6")
	must(cb.b, os.WriteFile(batch4, []byte(m), 0o644))
	must(cb.b, os.WriteFile(batch6, []byte(r6), 0o644))
	return batch4, batch6, sysctls
}

func (cb *coldBed) runBatch(file string, fam ...string) {
	argv := append(append([]string{"ip"}, fam...), "-batch", file)
	if out, err := cb.vpc.Exec(cb.vpc.Instance, argv...); err != nil {
		cb.b.Fatalf("%v: %v\n%s", argv, err, out)
	}
}

// writeSysctls sets the sysctls in the instance (ipbatch.WriteSysctls).
func (cb *coldBed) writeSysctls(sysctls []string) {
	h, err := cb.vpc.Handle(cb.vpc.Instance)
	must(cb.b, err)
	must(cb.b, ipbatch.WriteSysctls(h, sysctls))
}
