package packaging

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
)

// sudoPath is sudo's default secure_path on Debian and Ubuntu: no
// /usr/local/go/bin.
const sudoPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// With sudo's PATH, the Makefile finds the Go this test runs with where it
// is installed, says so in one line, and hands it to what it runs.
func TestMakeFindsGoWithSudoPath(t *testing.T) {
	requireTools(t, "make")
	goBin := filepath.Join(testGoRoot(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		t.Fatalf("this test's go: %v", err)
	}
	onPath := strings.Contains(":"+sudoPath+":", ":"+filepath.Dir(goBin)+":")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "-s", "go", "print-go-path")
	cmd.Dir = repoRoot
	cmd.Env = []string{"PATH=" + sudoPath, "HOME=/nonexistent", "SUDO_USER="}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make go print-go-path with sudo's PATH: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if onPath { // nothing to find: make says nothing and uses it
		if len(lines) != 1 || lines[0] != goBin {
			t.Errorf("go is on sudo's PATH: want make to use %s silently; got:\n%s", goBin, out)
		}
		return
	}
	if len(lines) != 2 || !strings.Contains(lines[0], "using "+goBin) || lines[1] != goBin {
		t.Errorf("want one line naming %s, then the go that make uses; got:\n%s", goBin, out)
	}
	t.Logf("sudo's PATH: %s", lines[0])
}

// Without any Go, make fails before doing anything, saying which version
// go.mod needs and where to get it. Every place find-go.sh looks is hidden
// in a private mount namespace.
func TestMakeWithoutGoSaysHowToGetIt(t *testing.T) {
	nstest.RequireRoot(t)
	requireTools(t, "make", "unshare")
	var hide []string
	for _, d := range []string{testGoRoot(), "/usr/local/go", "/usr/lib/go", "/snap/bin", "/root/go", "/root/sdk"} {
		if _, err := os.Stat(d); err == nil && !slices.Contains(hide, d) {
			hide = append(hide, d)
		}
	}
	script := "set -e\n"
	for _, d := range hide {
		script += "mount -t tmpfs none '" + d + "'\n"
	}
	script += "exec env -i PATH=" + sudoPath + " HOME=/nonexistent make --no-print-directory -s build\n"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("make build succeeded without Go:\n%s", out)
	}
	want := strings.TrimSpace(mustRun(t, "sed", "-n", "s/^go //p", "go.mod"))
	for _, s := range []string{"Go not found", "Go " + want + " or later", "https://go.dev/dl/"} {
		if !strings.Contains(string(out), s) {
			t.Errorf("make build without Go does not say %q:\n%s", s, out)
		}
	}
	t.Logf("hid %v; make build: %s", hide, strings.TrimSpace(string(out)))
}

// The README's first command as a new user runs it: sudo's default PATH
// (no Go on it) and no nft, bridge or ping on the machine (each hidden in
// a private mount namespace). make finds Go, and the demo needs nothing
// but Go, the kernel and iproute2.
func TestMakeDemoOnAFreshMachine(t *testing.T) {
	nstest.RequireRoot(t)
	requireTools(t, "make", "unshare")
	script := "set -e\n"
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		for _, tool := range []string{"nft", "bridge", "ping"} {
			p := filepath.Join(dir, tool)
			if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
				script += "mount --bind /dev/null '" + p + "'\n"
			}
		}
	}
	script += "exec env -i PATH=" + sudoPath + " HOME=/root GOCACHE=" + goEnv(t, "GOCACHE") +
		" GOMODCACHE=" + goEnv(t, "GOMODCACHE") + " make --no-print-directory demo\n"
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	// A copy of the sources: make demo rebuilds bin/ec2net, which other
	// packages' tests run meanwhile.
	cmd.Dir = copyOfSources(t)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Demo complete") {
		t.Fatalf("sudo make demo on a fresh machine: %v\n%s", err, out)
	}
}

// copyOfSources copies the repository's files (tracked and new, not
// ignored) into a temporary directory.
func copyOfSources(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	files := mustRun(t, "git", "ls-files", "--cached", "--others", "--exclude-standard")
	for _, f := range strings.Split(strings.TrimSpace(files), "\n") {
		src := filepath.Join(repoRoot, f)
		fi, err := os.Lstat(src)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the work tree, or not a file
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		d := filepath.Join(dst, f)
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(d, b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func goEnv(t *testing.T, key string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(testGoRoot(), "bin", "go"), "env", key).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// testGoRoot is the root of the Go that built this test binary: the Go
// these tests must find, hide or run, whatever PATH says.
func testGoRoot() string {
	//lint:ignore SA1019 the toolchain that built this test is the one meant here
	return runtime.GOROOT()
}
