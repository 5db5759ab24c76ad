package packaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// repoRoot is the repository, one level up from this package.
var repoRoot = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Dir(wd)
}()

// scratch holds what several tests share (the built packages); removed
// after all tests.
var scratch string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ec2net-packaging-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	scratch = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// command runs name with args (and extra environment) and returns its
// combined output.
func command(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = repoRoot
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String(), err
}

// mustRun runs a command that must succeed within two minutes.
func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := command(ctx, nil, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (CI installs it with apt-get; see packaging/README.md)", tool)
		}
	}
}

// builtPackages are the .deb and .rpm made by build.sh: release 1 as a
// user would build it, and release 2 of the same version for upgrades.
type builtPackages struct {
	Deb, RPM   string // release 1
	Deb2, RPM2 string // release 2
	Version    string // Debian version of release 1 (upstream-1)
}

var (
	buildOnce sync.Once
	built     builtPackages
	buildErr  error
)

// packages builds both releases once per test binary.
func packages(t testing.TB) builtPackages {
	t.Helper()
	buildOnce.Do(func() {
		start := time.Now()
		built, buildErr = buildPackages()
		if buildErr == nil {
			t.Logf("built %s, %s and release 2 in %v", filepath.Base(built.Deb), filepath.Base(built.RPM), time.Since(start).Round(time.Millisecond))
		}
	})
	if buildErr != nil {
		t.Fatalf("packaging/build.sh: %v", buildErr)
	}
	return built
}

func buildPackages() (builtPackages, error) {
	var b builtPackages
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out1, out2 := filepath.Join(scratch, "r1"), filepath.Join(scratch, "r2")
	stdout, err := command(ctx, nil, "bash", "packaging/build.sh", out1)
	if err != nil {
		return b, err
	}
	if b.Deb, b.RPM, err = packagePaths(out1); err != nil {
		return b, fmt.Errorf("%v\n%s", err, stdout)
	}
	if b.Version, err = command(ctx, nil, "dpkg-deb", "-f", b.Deb, "Version"); err != nil {
		return b, err
	}
	b.Version = strings.TrimSpace(b.Version)
	upstream, _, ok := strings.Cut(b.Version, "-")
	if !ok {
		return b, fmt.Errorf("deb version %q has no Debian revision", b.Version)
	}
	if _, err = command(ctx, []string{"EC2NET_VERSION=" + upstream, "EC2NET_RELEASE=2"},
		"bash", "packaging/build.sh", out2); err != nil {
		return b, err
	}
	b.Deb2, b.RPM2, err = packagePaths(out2)
	return b, err
}

// packagePaths finds the versioned packages build.sh wrote in dir
// (ec2net_<version>_<arch>.deb, ec2net-<version>.<arch>.rpm); the copies
// under stable names (ec2net_<arch>.deb, ec2net.<arch>.rpm) are checked
// to be the same files.
func packagePaths(dir string) (deb, rpm string, err error) {
	debs, _ := filepath.Glob(filepath.Join(dir, "ec2net_*_*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(dir, "ec2net-*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		return "", "", fmt.Errorf("expected one versioned .deb and .rpm in %s, got %v %v", dir, debs, rpms)
	}
	for _, p := range [][2]string{
		{debs[0], filepath.Join(dir, "ec2net_"+goarch()+".deb")},
		{rpms[0], filepath.Join(dir, "ec2net."+rpmArch(goarch())+".rpm")},
	} {
		a, err1 := os.ReadFile(p[0])
		b, err2 := os.ReadFile(p[1])
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			return "", "", fmt.Errorf("%s is not a copy of %s (%v, %v)", p[1], p[0], err1, err2)
		}
	}
	return debs[0], rpms[0], nil
}

// goarch is the architecture build.sh builds for by default: the test's.
func goarch() string { return runtime.GOARCH }

func rpmArch(goarch string) string {
	switch goarch {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return goarch
}

// rootCache returns the cached minimal Debian root (built by
// nspawn-root.sh on first use, about 1 min); with "cloud-init", the one
// that has Debian's cloud-init too.
func rootCache(t testing.TB, with ...string) string {
	t.Helper()
	requireTools(t, "debootstrap", "systemd-nspawn")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	args := []string{"packaging/nspawn-root.sh"}
	for _, w := range with {
		args = append(args, "--with", w)
	}
	out, err := command(ctx, nil, "bash", args...)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	dir := lines[len(lines)-1]
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("made the Debian root %s in %v (cached for later runs)", dir, d.Round(time.Second))
	}
	return dir
}

// overlayRoot mounts a writable overlay over the cached root, so the test
// can install and boot without changing the cache; unmounted and deleted
// when the test ends.
func overlayRoot(t testing.TB, with ...string) string {
	t.Helper()
	lower := rootCache(t, with...)
	dir := t.TempDir()
	upper, work, merged := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, d := range []string{upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay on %s: %v", merged, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(merged, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", merged, err)
		}
	})
	return merged
}

// waitFor polls cond until it holds or the deadline passes; what describes
// the last observation for the failure message.
func waitFor(t testing.TB, timeout time.Duration, desc string, cond func() (ok bool, what string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	interval := 20 * time.Millisecond
	for {
		ok, what := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, desc, what)
		}
		time.Sleep(interval)
		if interval < 200*time.Millisecond {
			interval *= 2
		}
	}
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func errorAs(err error, target any) bool { return errors.As(err, target) }
