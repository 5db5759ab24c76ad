// Command ec2net-demo is `sudo make demo`: it builds a simulated VPC in
// network namespaces of its own (an instance, a VPC router that enforces
// the source/destination check and serves a fake IMDS at 169.254.169.254,
// and a remote host), shows a secondary ENI's traffic being dropped, runs
// `ec2net apply` inside the instance namespace, shows `ec2net status` and
// the traffic passing, and tears everything down. It never touches the
// network namespace it is started in.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ec2net/ec2net/agent/vpcsim"
)

func main() {
	bin := flag.String("ec2net", "bin/ec2net", "path to the ec2net binary")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "ec2net-demo: needs root to create network namespaces: sudo make demo")
		os.Exit(1)
	}
	abs, err := filepath.Abs(*bin)
	if err == nil {
		*bin = abs
	}
	if err := demo(*bin); err != nil {
		fmt.Fprintf(os.Stderr, "\nec2net-demo: %v\n", err)
		os.Exit(1)
	}
}

var (
	subnetA  = netip.MustParsePrefix("100.64.1.0/24")
	subnetA6 = netip.MustParsePrefix("2001:db8:0:1::/64")
	subnetB  = netip.MustParsePrefix("100.64.2.0/24")
	subnetB6 = netip.MustParsePrefix("2001:db8:0:2::/64")
)

func demo(bin string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	step("Building a simulated VPC (instance, VPC router with source/destination check and fake IMDS, remote host)")
	vpc, err := vpcsim.New(vpcsim.Options{Prefix: "ec2demo"})
	if err != nil {
		return err
	}
	defer func() {
		step("Tearing down")
		if err := vpc.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "teardown: %v\n", err)
		} else {
			fmt.Println("  all namespaces removed")
		}
	}()
	if err := vpc.AddSubnet(subnetA, subnetA6); err != nil {
		return err
	}
	if err := vpc.AddSubnet(subnetB, subnetB6); err != nil {
		return err
	}
	primary := vpcsim.ENISpec{Name: "eth0", MAC: "02:ec:20:00:00:01", ID: "eni-0a000000000000001", Device: 0,
		SubnetIPv4: subnetA, SubnetIPv6: subnetA6, IPv4: vpcsim.Addrs("100.64.1.10", "100.64.1.11"), IPv6: vpcsim.Addrs("2001:db8:0:1::10")}
	if err := vpc.LaunchPrimary(primary); err != nil {
		return err
	}
	second := vpcsim.ENISpec{Name: "eth1", MAC: "02:ec:20:00:00:02", ID: "eni-0a000000000000002", Device: 1,
		SubnetIPv4: subnetB, SubnetIPv6: subnetB6,
		IPv4: vpcsim.Addrs("100.64.2.10", "100.64.2.11", "100.64.2.12"), IPv6: vpcsim.Addrs("2001:db8:0:2::10", "2001:db8:0:2::11")}
	if err := vpc.Attach(second); err != nil {
		return err
	}
	third := vpcsim.ENISpec{Name: "eth2", MAC: "02:ec:20:00:00:03", ID: "eni-0a000000000000003", Device: 2,
		SubnetIPv4: subnetA, IPv4: vpcsim.Addrs("100.64.1.20", "100.64.1.21"),
		IPv4Prefixes: []netip.Prefix{netip.MustParsePrefix("100.64.1.48/28")}}
	if err := vpc.Attach(third); err != nil {
		return err
	}
	fmt.Printf("  instance namespace %s: eth0 (primary, DHCP-configured), eth1 and eth2 hot-attached, down, no addresses\n", vpc.Instance)

	all := append(append(append([]netip.Addr{}, primary.IPv4...), second.IPv4...), third.IPv4...)
	all = append(append(all, primary.IPv6...), second.IPv6...)

	step("Before ec2net: only the primary's DHCP address works; the attached ENIs are down with no addresses")
	probeAll(ctx, vpc, all)

	step("Fixing eth1 by hand, as the EC2 docs say (address + link up), without policy routing")
	hand := []string{"ip addr add 100.64.2.10/24 dev eth1", "ip link set eth1 up"}
	for _, c := range hand {
		fmt.Printf("  # %s\n", c)
		if out, err := vpc.Exec(vpc.Instance, strings.Fields(c)...); err != nil {
			return fmt.Errorf("%s: %v: %s", c, err, out)
		}
	}
	probeAll(ctx, vpc, second.IPv4[:1])
	if drops, err := vpc.Drops(); err == nil {
		var lines []string
		for _, l := range strings.Split(drops, "\n") {
			if strings.Contains(l, "100.64.2.10") {
				lines = append(lines, l)
			}
		}
		fmt.Printf("  its packets left through eth0 (main table), so the VPC router's source/destination check dropped them:\n%s", indent(strings.Join(lines, "\n")))
	}
	for _, c := range []string{"ip addr del 100.64.2.10/24 dev eth1", "ip link set eth1 down"} {
		if out, err := vpc.Exec(vpc.Instance, strings.Fields(c)...); err != nil {
			return fmt.Errorf("%s: %v: %s", c, err, out)
		}
	}
	fmt.Println("  (hand configuration undone)")

	stateDir, err := os.MkdirTemp("", "ec2net-demo-state-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stateDir)
	ec2net := func(args ...string) (string, error) {
		argv := append([]string{"netns", "exec", vpc.Instance, bin}, args...)
		argv = append(argv, "--imds-endpoint", "http://169.254.169.254", "--state-dir", stateDir, "--config", "/dev/null")
		out, err := exec.CommandContext(ctx, "ip", argv...).CombinedOutput()
		return string(out), err
	}

	step("ip netns exec " + vpc.Instance + " ec2net apply")
	out, err := ec2net("apply", "--wait", "10s")
	fmt.Print(indent(out))
	if err != nil {
		return fmt.Errorf("ec2net apply: %v", err)
	}

	step("ec2net status")
	out, err = ec2net("status")
	fmt.Print(indent(out))
	if err != nil {
		return fmt.Errorf("ec2net status: %v", err)
	}

	step("After ec2net: the same probes")
	if failed := probeAll(ctx, vpc, all); failed > 0 {
		return fmt.Errorf("%d probes still fail after ec2net apply", failed)
	}

	step("A second apply changes nothing")
	out, err = ec2net("apply")
	fmt.Print(indent(out))
	if err != nil {
		return fmt.Errorf("second apply: %v", err)
	}

	step("ec2net cleanup removes only what ec2net added")
	out, err = ec2net("cleanup")
	fmt.Print(indent(lastLines(out, 3)))
	if err != nil {
		return fmt.Errorf("ec2net cleanup: %v", err)
	}
	if err := vpc.ProbeIMDS(ctx); err != nil {
		return fmt.Errorf("IMDS unreachable after cleanup: %v", err)
	}
	fmt.Println("  eth0 and IMDS still work after cleanup")
	fmt.Println("\nDemo complete: every address of every ENI carried traffic after one `ec2net apply`.")
	return nil
}

func probeAll(ctx context.Context, vpc *vpcsim.VPC, all []netip.Addr) (failed int) {
	for _, a := range all {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		out, err := vpc.ProbeTCP(pctx, a)
		cancel()
		in := "ok"
		pctx, cancel = context.WithTimeout(ctx, 2*time.Second)
		if _, ierr := vpc.ProbeInbound(pctx, a); ierr != nil {
			in = "FAIL"
			failed++
		}
		cancel()
		switch {
		case err != nil:
			fmt.Printf("  %-18s out: FAIL (%s)   in: %s\n", a, reason(err), in)
			failed++
		default:
			fmt.Printf("  %-18s out: ok (remote saw %s)   in: %s\n", a, out.SeenSource, in)
		}
	}
	return failed
}

// reason shortens a probe error for the demo's table.
func reason(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "assign requested address"), strings.Contains(msg, "not assigned"):
		return "address not configured"
	case strings.Contains(msg, "timeout"), strings.Contains(msg, "deadline"):
		return "no answer: dropped"
	}
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

func step(s string) { fmt.Printf("\n== %s\n", s) }

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ") + "\n"
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("(%d lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
