package netconf

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf/ipbatch"
)

// The benchmark instance: 15 ENIs, each with 50 IPv4 and 50 IPv6
// addresses and two delegated prefixes (one per family).
const (
	benchENIs  = 15
	benchAddrs = 50
)

func benchMAC(i int) string { return fmt.Sprintf("02:00:00:00:b0:%02x", i) }

func benchSnapshot() *imds.Snapshot {
	s := &imds.Snapshot{PrimaryMAC: "02:00:00:00:b0:ff"}
	for i := 1; i <= benchENIs; i++ {
		e := imds.ENI{MAC: benchMAC(i), InterfaceID: fmt.Sprintf("eni-%08x", i), DeviceNumber: i,
			SubnetIPv4:   netip.MustParsePrefix(fmt.Sprintf("100.64.%d.0/24", i)),
			SubnetIPv6:   []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("2001:db8:0:%x::/64", i))},
			IPv4Prefixes: []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("100.64.%d.192/28", i))},
			IPv6Prefixes: []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("2001:db8:0:%x:1::/80", i))},
		}
		for a := 0; a < benchAddrs; a++ {
			e.IPv4 = append(e.IPv4, netip.MustParseAddr(fmt.Sprintf("100.64.%d.%d", i, 10+a)))
			e.IPv6 = append(e.IPv6, netip.MustParseAddr(fmt.Sprintf("2001:db8:0:%x::%x", i, 0x10+a)))
		}
		s.ENIs = append(s.ENIs, e)
	}
	return s
}

// benchBed builds a namespace with the 15 veth ENIs (timer stopped).
func benchBed(b *testing.B) *bed {
	bd := newBed(b)
	for i := 1; i <= benchENIs; i++ {
		bd.veth(fmt.Sprintf("eth%d", i), benchMAC(i))
	}
	return bd
}

// benchCommands is the plan for an empty bed as iproute2 command lines
// (without the leading "ip"), so that ip applies exactly what ec2net does.
func benchCommands(b *testing.B, bd *bed) []string {
	r := bd.reconciler()
	p, err := r.Plan(benchSnapshot(), cfg())
	if err != nil {
		b.Fatal(err)
	}
	var out []string
	for _, c := range p.Changes {
		out = append(out, strings.TrimPrefix(c.Text(), "ip "))
	}
	return out
}

// checkSame fails unless the bed holds exactly what ec2net wants.
func checkSame(b *testing.B, bd *bed) {
	r := bd.reconciler()
	p, err := r.Plan(benchSnapshot(), cfg())
	if err != nil {
		b.Fatal(err)
	}
	if len(p.Changes) != 0 {
		b.Fatalf("bed differs from ec2net's desired state by %d changes, first: %s", len(p.Changes), p.Changes[0])
	}
}

func BenchmarkApplyFromScratch(b *testing.B) {
	var writes int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		bd := benchBed(b)
		r := bd.reconciler()
		b.StartTimer()
		res, err := r.Apply(benchSnapshot(), cfg())
		b.StopTimer()
		if err != nil || len(res.Failed()) != 0 {
			b.Fatalf("apply: %v %v", err, res.Failed())
		}
		writes = res.Writes
		if i == 0 {
			checkSame(b, bd)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(writes), "writes/op")
}

func BenchmarkIPBatch(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		bd := benchBed(b)
		cmds := benchCommands(b, bd)
		m, r6, sysctls := ipbatch.Split(cmds)
		run := func(stdin string, fam ...string) {
			cmd := exec.Command("ip", append(append([]string{"-n", bd.name}, fam...), "-batch", "-")...)
			cmd.Stdin = strings.NewReader(stdin)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				b.Fatalf("ip -batch: %v\n%s", err, out.String())
			}
		}
		b.StartTimer()
		run(m)
		run(r6, "-6")
		if err := ipbatch.WriteSysctls(bd.ns, sysctls); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if i == 0 {
			checkSame(b, bd)
		}
		b.StartTimer()
	}
}

func BenchmarkIPPerCommand(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		bd := benchBed(b)
		cmds := benchCommands(b, bd)
		_, _, sysctls := ipbatch.Split(cmds)
		b.StartTimer()
		for _, c := range cmds {
			if strings.HasPrefix(c, "sysctl ") {
				continue // ip cannot; WriteSysctls below
			}
			args := append([]string{"-n", bd.name}, strings.Fields(c)...)
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				b.Fatalf("ip %s: %v\n%s", c, err, out)
			}
		}
		if err := ipbatch.WriteSysctls(bd.ns, sysctls); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if i == 0 {
			checkSame(b, bd)
		}
		b.StartTimer()
	}
}

func BenchmarkReapplyNoChange(b *testing.B) {
	bd := benchBed(b)
	r := bd.reconciler()
	s := benchSnapshot()
	if _, err := r.Apply(s, cfg()); err != nil {
		b.Fatal(err)
	}
	writes := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := r.Apply(s, cfg())
		if err != nil {
			b.Fatal(err)
		}
		writes += res.Writes
	}
	b.StopTimer()
	b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
}

// BenchmarkPlanFromScratch is the compute half of a cold apply (kernel
// read, desired state, diff) without the writes: what `ec2net plan` and
// the evidence question before an apply cost on a fresh instance.
func BenchmarkPlanFromScratch(b *testing.B) {
	bd := benchBed(b)
	r := bd.reconciler()
	snap := benchSnapshot()
	var changes int
	for b.Loop() {
		p, err := r.Plan(snap, cfg())
		if err != nil {
			b.Fatal(err)
		}
		changes = len(p.Changes)
	}
	b.ReportMetric(float64(changes), "changes/op")
}
