package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
)

// binaries builds the demo and finds or builds ec2net (make test exports
// EC2NET_BIN after building it).
func binaries(t *testing.T) (demo, ec2net string) {
	t.Helper()
	nstest.RequireRoot(t)
	dir := t.TempDir()
	demo = filepath.Join(dir, "ec2net-demo")
	if out, err := exec.Command("go", "build", "-o", demo, ".").CombinedOutput(); err != nil {
		t.Fatalf("build the demo: %v\n%s", err, out)
	}
	// A private copy: leftBehind looks for processes running this very
	// file, and other packages' tests run daemons of EC2NET_BIN meanwhile.
	ec2net = filepath.Join(dir, "ec2net")
	if shared := os.Getenv("EC2NET_BIN"); shared != "" {
		if b, err := os.ReadFile(shared); err == nil {
			if err := os.WriteFile(ec2net, b, 0o755); err != nil {
				t.Fatal(err)
			}
			return demo, ec2net
		}
	}
	if out, err := exec.Command("go", "build", "-o", ec2net, "../ec2net").CombinedOutput(); err != nil {
		t.Fatalf("build ec2net: %v\n%s", err, out)
	}
	return demo, ec2net
}

// leftBehind lists namespaces of the demo process pid and processes still
// running the ec2net binary at path.
func leftBehind(t *testing.T, pid int, ec2net string) []string {
	t.Helper()
	var out []string
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "ec2demo-"+strconv.Itoa(pid)+"-") {
			out = append(out, "namespace "+e.Name())
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", p.Name(), "exe")); err == nil && exe == ec2net {
			out = append(out, "process "+p.Name()+" "+exe)
		}
	}
	return out
}

const noToolsEnv = "EC2NET_DEMO_TEST_NO_TOOLS"

// The demo end to end, on a machine without ip, nft, bridge or ping (the
// test runs itself again in a private mount namespace that hides them):
// cold apply, hot attach handled by the daemon, the move between two
// instances; it passes and leaves nothing behind.
func TestDemoEndToEnd(t *testing.T) {
	demo, ec2net := binaries(t)
	if os.Getenv(noToolsEnv) != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestDemoEndToEnd$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), noToolsEnv+"=1", "EC2NET_BIN="+ec2net)
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
		out, err := cmd.CombinedOutput()
		t.Logf("%s", out)
		if err != nil || !bytes.Contains(out, []byte("hidden: [")) {
			t.Fatalf("the demo without ip, nft, bridge and ping: %v", err)
		}
		return
	}
	t.Logf("hidden: %v", nstest.HideTools(t, "ip", "nft", "bridge", "ping"))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, demo, "--ec2net", ec2net)
	out, err := cmd.CombinedOutput()
	t.Logf("demo output:\n%s", out)
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	for _, want := range []string{
		"dropped from eni1 (eth0 02:ec:20:00:00:01) 100.64.2.10:",
		"carry traffic", "nobody ran apply",
		"detach -> every address answered by B:",
		"A clean", "B's own eth0 still carries traffic",
		"Demo complete", "all namespaces removed",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if left := leftBehind(t, cmd.Process.Pid, ec2net); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// Ctrl-C while both daemons run: the demo stops them, removes every
// namespace and exits 130.
func TestDemoInterruptCleansUp(t *testing.T) {
	demo, ec2net := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, demo, "--ec2net", ec2net)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	var log strings.Builder
	sc := bufio.NewScanner(pr)
	interrupted := false
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if !interrupted && strings.Contains(sc.Text(), "daemon ready") {
			// B's daemon is up (A's too): interrupt now.
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			interrupted = true
		}
	}
	err = cmd.Wait()
	t.Logf("demo output:\n%s", log.String())
	var ee *exec.ExitError
	if !interrupted || !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("interrupted %v, exit %v (want 130)", interrupted, err)
	}
	if !strings.Contains(log.String(), "all namespaces removed") {
		t.Error("the demo did not tear down")
	}
	if left := leftBehind(t, cmd.Process.Pid, ec2net); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}
