package main

// Ownership through every crash: ec2net apply and ec2net run are killed
// with SIGKILL at random points of a large apply (10 ENIs x 30
// addresses), many times, with IMDS assignments changing in between, on
// a kernel that marks addresses (IFA_PROTO) and in the mode of one that
// does not (the record and its write-ahead alone). Then: a full /run, a
// truncated, a corrupt and a deleted record. After a final apply and a
// cleanup, nothing ec2net added may be left, and nothing foreign touched.

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
)

type crashBed struct {
	*bed
	enis    []vpcsim.ENISpec
	env     []string
	foreign []string // `ip` lines of the foreign objects, to find them again
}

func newCrashBed(t *testing.T, prefix string, oldKernel bool) *crashBed {
	t.Helper()
	nstest.RequireRoot(t)
	vpc := vpcsim.NewForTest(t, prefix)
	subnet := netip.MustParsePrefix("100.64.16.0/20")
	must(t, vpc.AddSubnet(subnetA, netip.Prefix{}))
	must(t, vpc.AddSubnet(subnet, netip.Prefix{}))
	b := &crashBed{bed: &bed{t: t, vpc: vpc, stateDir: t.TempDir()}}
	b.primary = vpcsim.ENISpec{Name: "eth0", MAC: "02:ec:20:00:09:00", ID: "eni-0c0000000000000900",
		SubnetIPv4: subnetA, IPv4: vpcsim.Addrs("100.64.1.10")}
	must(t, vpc.LaunchPrimary(b.primary))
	for i := 1; i <= 10; i++ {
		e := vpcsim.ENISpec{Name: fmt.Sprintf("eth%d", i), MAC: fmt.Sprintf("02:ec:20:00:09:%02x", i),
			ID: fmt.Sprintf("eni-0c00000000000009%02x", i), Device: i, SubnetIPv4: subnet}
		for j := 0; j < 30; j++ {
			e.IPv4 = append(e.IPv4, netip.AddrFrom4([4]byte{100, 64, byte(16 + i), byte(10 + j)}))
		}
		must(t, vpc.Attach(e))
		b.enis = append(b.enis, e)
	}
	if oldKernel {
		b.env = []string{"EC2NET_TEST_NO_ADDR_PROTO=1"}
	}
	// Foreign objects: an address on a secondary ENI, a rule and a route
	// in ec2net's table range.
	for _, c := range [][]string{
		{"addr", "add", "100.64.31.250/32", "dev", "eth1"},
		{"rule", "add", "from", "100.64.31.251", "lookup", "10001", "pref", "10001", "proto", "static"},
		{"route", "add", "100.64.99.0/24", "via", "100.64.1.1", "dev", "eth0", "table", "10002", "proto", "static"},
	} {
		b.ip(c...)
	}
	b.foreign = []string{"100.64.31.250/32", "from 100.64.31.251 lookup 10001", "100.64.99.0/24 via 100.64.1.1"}
	return b
}

// start runs ec2net in the instance namespace without waiting.
func (b *crashBed) start(args ...string) *exec.Cmd {
	b.t.Helper()
	argv := append(append([]string{ec2netBin}, args...), "--imds-endpoint", "http://169.254.169.254",
		"--state-dir", b.stateDir, "--config", "/dev/null", "--remove-after-time", "0s")
	cmd, err := b.vpc.Command(b.vpc.Instance, argv...)
	must(b.t, err)
	cmd.Env = append(os.Environ(), b.env...)
	must(b.t, cmd.Start())
	return cmd
}

func (b *crashBed) run(args ...string) (string, int) {
	b.t.Helper()
	cmd := b.start(args...)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return "", code
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		b.t.Fatalf("ec2net %v did not finish", args)
		return "", -1
	}
}

// kill starts ec2net and SIGKILLs it after a random delay.
func (b *crashBed) kill(rng *rand.Rand, args ...string) {
	cmd := b.start(args...)
	time.Sleep(time.Duration(rng.IntN(120)) * time.Millisecond) // the crash point, not synchronisation
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
}

// leftovers lists what cleanup must have removed: addresses on ENI links
// other than the foreign one, and rules and routes with protocol 236.
func (b *crashBed) leftovers() []string {
	var out []string
	for _, e := range b.enis {
		for _, l := range strings.Split(b.ip("-o", "-4", "addr", "show", "dev", e.Name), "\n") {
			if f := strings.Fields(l); len(f) > 3 && f[3] != "100.64.31.250/32" {
				out = append(out, e.Name+" "+f[3])
			}
		}
	}
	if r := b.ownedRules(); r != "" {
		out = append(out, r)
	}
	if r := strings.TrimSpace(b.ip("route", "show", "table", "all", "proto", "236")); r != "" {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

func (b *crashBed) foreignIntact() {
	b.t.Helper()
	all := b.ip("addr", "show") + b.ip("rule", "show") + b.ip("route", "show", "table", "all")
	for _, f := range b.foreign {
		if !strings.Contains(all, f) {
			b.t.Errorf("foreign object %q touched", f)
		}
	}
}

func testCrashes(t *testing.T, oldKernel bool) {
	b := newCrashBed(t, "crash", oldKernel)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	unassigned := map[netip.Addr]bool{}
	for i := 0; i < 12; i++ {
		// Change what IMDS assigns, so that the next run has additions
		// and removals to make: take away an address still assigned, or
		// give one back.
		e := b.enis[rng.IntN(len(b.enis))]
		a := e.IPv4[1+rng.IntN(len(e.IPv4)-1)]
		for i%2 == 0 && unassigned[a] {
			e = b.enis[rng.IntN(len(b.enis))]
			a = e.IPv4[1+rng.IntN(len(e.IPv4)-1)]
		}
		if i%2 == 0 {
			must(t, b.vpc.UnassignIPv4(e.MAC, a))
			unassigned[a] = true
		} else if b.vpc.AssignIPv4(e.MAC, a) == nil {
			delete(unassigned, a)
		}
		cmd := "apply"
		if i%3 == 2 {
			cmd = "run"
		}
		b.kill(rng, cmd)
	}
	// Damage the record between crashes too (one apply first: all the
	// kills may have come before the first apply made its directory).
	if _, code := b.run("apply"); code != 0 {
		t.Fatalf("apply exit %d", code)
	}
	state := stateFile(t, b.stateDir)
	for _, damage := range []func(){
		func() { must(t, os.Truncate(state, 17)) },
		func() { must(t, os.WriteFile(state, []byte("{\"version\": 1, \"enis\": garbage"), 0o600)) },
		func() { must(t, os.Remove(state)) },
		func() { must(t, os.RemoveAll(filepath.Dir(state))) },
	} {
		if _, code := b.run("apply"); code != 0 {
			t.Fatalf("apply exit %d", code)
		}
		damage()
		b.kill(rng, "apply")
	}
	// Converge, then unassign every secondary address: each must go.
	if _, code := b.run("apply"); code != 0 {
		t.Fatalf("apply after the crashes: exit %d", code)
	}
	b.assertTraffic([]netip.Addr{b.enis[0].IPv4[0], b.enis[9].IPv4[0]})
	for _, e := range b.enis {
		for _, a := range e.IPv4[1:] {
			_ = b.vpc.UnassignIPv4(e.MAC, a)
		}
	}
	if _, code := b.run("apply"); code != 0 {
		t.Fatalf("apply after the unassignment: exit %d", code)
	}
	for _, e := range b.enis {
		out := b.ip("-o", "-4", "addr", "show", "dev", e.Name)
		if n := strings.Count(out, " inet "); n != 1+boolInt(e.Name == "eth1") {
			t.Errorf("%s keeps %d addresses after its secondary ones were unassigned:\n%s", e.Name, n, out)
		}
	}
	if _, code := b.run("cleanup"); code != 0 {
		t.Fatalf("cleanup exit %d", code)
	}
	if left := b.leftovers(); len(left) != 0 {
		t.Errorf("leaked after crashes, apply and cleanup:\n%s", strings.Join(left, "\n"))
	}
	b.foreignIntact()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// stateFile is the record of the bed's one namespace.
func stateFile(t *testing.T, root string) string {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(root, "netns-*"))
	if len(dirs) != 1 {
		t.Fatalf("state directories under %s: %v", root, dirs)
	}
	return filepath.Join(dirs[0], "state.json")
}

func TestCrashesLeakNothing(t *testing.T) { testCrashes(t, false) }

// A full /run: the record cannot be written. Where the kernel marks
// addresses, apply still configures everything and a later cleanup (with
// no record at all) finds and removes it; without marks, apply refuses to
// add addresses it could not record (exit 1, saying so) and leaks nothing.
func TestFullRunLeaksNothing(t *testing.T) {
	for _, old := range []bool{false, true} {
		t.Run(fmt.Sprintf("without_marks=%v", old), func(t *testing.T) {
			b := newCrashBed(t, "crfull", old)
			full := t.TempDir()
			script := `mount -t tmpfs -o size=8k tmpfs "$0" && dd if=/dev/zero of="$0/fill" bs=1k count=64 2>/dev/null; exec "$@"`
			argv := []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", script, full, ec2netBin, "apply",
				"--imds-endpoint", "http://169.254.169.254", "--state-dir", full, "--config", "/dev/null"}
			cmd, err := b.vpc.Command(b.vpc.Instance, argv...)
			must(t, err)
			cmd.Env = append(os.Environ(), b.env...)
			out, err := cmd.CombinedOutput()
			t.Logf("apply with a full /run: %v\n%s", err, out)
			if !old {
				if err != nil {
					t.Fatalf("apply with a full /run on a kernel with address marks: %v", err)
				}
				b.assertTraffic([]netip.Addr{b.enis[0].IPv4[5], b.enis[9].IPv4[29]})
			} else if err == nil || !strings.Contains(string(out), "ownership record") {
				t.Errorf("apply with a full /run and no address marks should fail naming the record: %v", err)
			}
			if _, code := b.run("cleanup"); code != 0 {
				t.Fatalf("cleanup exit %d", code)
			}
			if left := b.leftovers(); len(left) != 0 {
				t.Errorf("leaked:\n%s", strings.Join(left, "\n"))
			}
			b.foreignIntact()
		})
	}
}

func TestCrashesLeakNothingWithoutAddressMarks(t *testing.T) { testCrashes(t, true) }
