package vpcsim

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
	"golang.org/x/sys/unix"
)

// nsInode is "net:[<inode>]", what /proc/<pid>/ns/net links to.
func nsInode(t *testing.T, v *VPC, ns string) string {
	t.Helper()
	h, err := v.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("net:[%d]", st.Ino)
}

// Command's process is argv itself (the launcher execs it), in the
// namespace asked for; Exec's child is too.
func TestCommandAndExecRunInTheNamespace(t *testing.T) {
	v, _, b := newTwoInstanceBed(t)
	for _, ns := range []string{v.Instance, b.Name, v.Router} {
		cmd, err := v.Command(ns, "sh", "-c", `echo $$; readlink /proc/self/ns/net`)
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", ns, err)
		}
		lines := strings.Fields(string(out))
		if len(lines) != 2 || lines[0] != fmt.Sprint(cmd.Process.Pid) || lines[1] != nsInode(t, v, ns) {
			t.Fatalf("in %s (pid %d, %s): %q", ns, cmd.Process.Pid, nsInode(t, v, ns), out)
		}
		out2, err := v.Exec(ns, "readlink", "/proc/self/ns/net")
		if err != nil || strings.TrimSpace(out2) != nsInode(t, v, ns) {
			t.Fatalf("Exec in %s: %q %v", ns, out2, err)
		}
	}
	cmd, err := b.Command("vpcsim-no-such-program")
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Run(); err == nil {
		t.Fatal("a missing program started")
	}
	if _, err := v.Command("not-a-namespace-of-this-vpc", "true"); err == nil {
		t.Fatal("Command in a foreign namespace")
	}
}

// hiddenTools are the binaries the simulator used to run.
var hiddenTools = []string{"nft", "ip", "bridge", "ping"}

const noToolsEnv = "VPCSIM_TEST_NO_TOOLS"

// The simulator's core path works on a machine without nftables,
// iproute2 or iputils: the test runs itself again in a private mount
// namespace where every copy of those binaries on PATH is covered by
// /dev/null (not executable), and there builds a bed, attaches an ENI,
// shows its TCP probe failing without policy routing with the dropped pair
// in Drops, pings, runs the Docker-like NAT and a program via Command.
func TestCorePathWithoutTools(t *testing.T) {
	nstest.RequireRoot(t)
	if os.Getenv(noToolsEnv) == "1" {
		corePathWithoutTools(t)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCorePathWithoutTools$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), noToolsEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatalf("the core path without %v: %v", hiddenTools, err)
	}
	if !strings.Contains(string(out), "hidden: ") || !strings.Contains(string(out), "--- PASS: TestCorePathWithoutTools") {
		t.Fatal("the child did not run the core path")
	}
}

func corePathWithoutTools(t *testing.T) {
	t.Logf("hidden: %v", nstest.HideTools(t, hiddenTools...))
	v := newBed(t)
	s := secondarySpec()
	if err := v.Attach(s); err != nil {
		t.Fatal(err)
	}
	if err := v.ConfigureWithoutPolicyRouting(s.MAC); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ProbeTCP(fastCtx(t), s.IPv4[0]); err == nil {
		t.Fatal("TCP from a secondary ENI passed without policy routing")
	}
	drops, err := v.Drops()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(drops, "from eni1 (eth0 02:00:00:00:01:00) "+s.IPv4[0].String()+":") {
		t.Fatalf("drops do not show the pair:\n%s", drops)
	}
	mustPassOut(t, v, primaryV4)
	if err := v.ProbeICMP(context.Background(), primaryV4); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.AddDockerLikeBridge(); err != nil {
		t.Fatal(err)
	}
	if err := v.ProbePublishedPort(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := v.AddInstance()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.LaunchPrimary(bSpec()); err != nil {
		t.Fatal(err)
	}
	if got, err := b.GetIMDS(context.Background(), IMDSAddr, "instance-id"); err != nil || got != b.InstanceID() {
		t.Fatalf("second instance's IMDS: %q %v", got, err)
	}
	cmd, err := v.Command(v.Instance, "cat", "/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("Command: %q %v", out, err)
	}
	// A test that still runs a hidden tool is told which package it needs.
	if _, err := v.Exec(v.Instance, "ip", "link"); err == nil || !strings.Contains(err.Error(), "apt-get install iproute2") {
		t.Fatalf("Exec of a missing ip: %v", err)
	}
	t.Logf("drops:\n%s", drops)
}
