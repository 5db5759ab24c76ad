// Command ec2net-demo is `sudo make demo`: it builds a simulated VPC in
// network namespaces of its own (an instance, a VPC router that enforces
// the source/destination check and serves a fake IMDS at 169.254.169.254,
// and a remote host), shows a secondary ENI's traffic being dropped, runs
// `ec2net apply` inside the instance namespace, shows `ec2net status` and
// the traffic passing; then starts the daemon (`ec2net run`) and
// hot-attaches an ENI that carries traffic without anyone running apply,
// and moves that ENI to a second instance running its own daemon,
// measuring the time from the detach until B answers on every address and
// checking that A is left clean. It tears everything down (also on error
// or Ctrl-C) and never touches the network namespace it is started in. It
// needs only the kernel: no ip, nft or ping.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

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
	if _, err := os.Stat(*bin); err != nil {
		fmt.Fprintf(os.Stderr, "ec2net-demo: no ec2net binary at %s (make build): %v\n", *bin, err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err = demo(ctx, *bin)
	interrupted := ctx.Err() != nil
	stop()
	if err != nil {
		if interrupted {
			fmt.Fprintln(os.Stderr, "\nec2net-demo: interrupted (everything it created was removed)")
			os.Exit(130)
		}
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

// The ENIs of the first instance when ec2net first runs: the primary,
// configured by DHCP at boot, and two hot-attached ones.
var (
	primaryENI = vpcsim.ENISpec{Name: "eth0", MAC: "02:ec:20:00:00:01", ID: "eni-0a000000000000001", Device: 0,
		SubnetIPv4: subnetA, SubnetIPv6: subnetA6, IPv4: vpcsim.Addrs("100.64.1.10", "100.64.1.11"), IPv6: vpcsim.Addrs("2001:db8:0:1::10")}
	secondENI = vpcsim.ENISpec{Name: "eth1", MAC: "02:ec:20:00:00:02", ID: "eni-0a000000000000002", Device: 1,
		SubnetIPv4: subnetB, SubnetIPv6: subnetB6,
		IPv4: vpcsim.Addrs("100.64.2.10", "100.64.2.11", "100.64.2.12"), IPv6: vpcsim.Addrs("2001:db8:0:2::10", "2001:db8:0:2::11")}
	thirdENI = vpcsim.ENISpec{Name: "eth2", MAC: "02:ec:20:00:00:03", ID: "eni-0a000000000000003", Device: 2,
		SubnetIPv4: subnetA, IPv4: vpcsim.Addrs("100.64.1.20", "100.64.1.21"),
		IPv4Prefixes: []netip.Prefix{netip.MustParsePrefix("100.64.1.48/28")}}
)

// demo runs the story of the package comment, one phase per function.
func demo(ctx context.Context, bin string) error {

	step("Building a simulated VPC (instance, VPC router with source/destination check and fake IMDS, remote host)")
	vpc, err := vpcsim.New(vpcsim.Options{Prefix: "ec2demo"})
	if err != nil {
		return err
	}
	defer teardown(vpc)
	if err := launchENIs(vpc); err != nil {
		return err
	}
	fmt.Printf("  instance namespace %s: eth0 (primary, DHCP-configured), eth1 and eth2 hot-attached, down, no addresses\n", vpc.Instance)

	all := append(append(append([]netip.Addr{}, primaryENI.IPv4...), secondENI.IPv4...), thirdENI.IPv4...)
	all = append(append(all, primaryENI.IPv6...), secondENI.IPv6...)

	step("Before ec2net: only the primary's DHCP address works; the attached ENIs are down with no addresses")
	probeAll(ctx, vpc, all)
	if err := fixByHand(ctx, vpc); err != nil {
		return err
	}

	stateDir, err := os.MkdirTemp("", "ec2net-demo-state-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stateDir)
	if err := applyAndCleanup(ctx, vpc, ec2netIn(ctx, vpc, bin, stateDir), all); err != nil {
		return err
	}

	a, err := hotAttach(ctx, vpc, bin, stateDir, append(append([]netip.Addr{}, secondENI.IPv4...), thirdENI.IPv4...))
	if err != nil {
		return err
	}
	defer a.stop()
	if err := move(ctx, vpc, a, bin, stateDir); err != nil {
		return err
	}
	fmt.Println("\nDemo complete: one `ec2net apply` configured every ENI; the daemon configured a hot-attached ENI")
	fmt.Println("without anyone running apply, and followed it when it moved to another instance.")
	return nil
}

func teardown(vpc *vpcsim.VPC) {
	step("Tearing down")
	if err := vpc.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "teardown: %v\n", err)
	} else {
		fmt.Println("  all namespaces removed")
	}
}

// launchENIs adds the two subnets, launches the primary ENI and
// hot-attaches the other two.
func launchENIs(vpc *vpcsim.VPC) error {
	if err := vpc.AddSubnet(subnetA, subnetA6); err != nil {
		return err
	}
	if err := vpc.AddSubnet(subnetB, subnetB6); err != nil {
		return err
	}
	if err := vpc.LaunchPrimary(primaryENI); err != nil {
		return err
	}
	if err := vpc.Attach(secondENI); err != nil {
		return err
	}
	return vpc.Attach(thirdENI)
}

// fixByHand configures eth1 as the EC2 docs say, shows the VPC router
// dropping its traffic, and undoes it.
func fixByHand(ctx context.Context, vpc *vpcsim.VPC) error {
	step("Fixing eth1 by hand, as the EC2 docs say (address + link up), without policy routing")
	fmt.Println("  # ip addr add 100.64.2.10/24 dev eth1; ip link set eth1 up    (done through netlink)")
	if err := handConfigure(vpc, "eth1", netip.MustParsePrefix("100.64.2.10/24"), true); err != nil {
		return err
	}
	probeAll(ctx, vpc, secondENI.IPv4[:1])
	if drops, err := vpc.Drops(); err == nil {
		var lines []string
		for _, l := range strings.Split(drops, "\n") {
			if strings.Contains(l, "100.64.2.10") {
				lines = append(lines, l)
			}
		}
		fmt.Printf("  its packets left through eth0 (main table), so the VPC router's source/destination check dropped them:\n%s", indent(strings.Join(lines, "\n")))
	}
	if err := handConfigure(vpc, "eth1", netip.MustParsePrefix("100.64.2.10/24"), false); err != nil {
		return err
	}
	fmt.Println("  (hand configuration undone)")
	return nil
}

// ec2netIn returns a function running the ec2net binary in the instance
// namespace against the fake IMDS, with the demo's state directory and an
// empty configuration; it returns the combined output.
func ec2netIn(ctx context.Context, vpc *vpcsim.VPC, bin, stateDir string) func(args ...string) (string, error) {
	return func(args ...string) (string, error) {
		argv := append([]string{bin}, args...)
		argv = append(argv, "--imds-endpoint", "http://169.254.169.254", "--state-dir", stateDir, "--config", "/dev/null")
		cmd, err := vpc.CommandContext(ctx, vpc.Instance, argv...)
		if err != nil {
			return "", err
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
}

// applyAndCleanup runs ec2net apply, status, apply again and cleanup,
// probing every address in all after the first apply.
func applyAndCleanup(ctx context.Context, vpc *vpcsim.VPC, ec2net func(args ...string) (string, error), all []netip.Addr) error {
	step("ec2net apply (in the instance namespace " + vpc.Instance + ")")
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
	return nil
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
