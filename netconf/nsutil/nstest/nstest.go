// Package nstest is what tests need around network namespaces: a test
// that needs root skips without it (and fails in CI), a throwaway named
// namespace deleted whatever the outcome, tools hidden from PATH. It is
// apart from nsutil so that the ec2net binary does not link "testing".
package nstest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RequireRoot skips a test that needs CAP_NET_ADMIN when not root, except
// under CI (CI=true), where a skip would hide that the namespace tests did
// not run: there it fails instead.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if InCI() {
		t.Fatalf("namespace tests must run as root in CI (euid %d)", os.Geteuid())
	}
	t.Skip("needs root to create network namespaces")
}

// NewTestNS creates a throwaway named namespace for t and deletes it when
// the test ends, whatever the outcome.
func NewTestNS(t testing.TB, prefix string) (string, netns.NsHandle) {
	t.Helper()
	RequireRoot(t)
	name := nsutil.UniqueName(prefix)
	h, err := nsutil.NewNamed(name)
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		h.Close()
		if err := nsutil.DeleteNamed(name); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name, h
}

// HideTools covers every copy of the named binaries on PATH (and in the
// usual sbin and bin directories) with /dev/null, which is not executable,
// and fails t unless exec.LookPath then finds none. Call it only in a
// process that unshared its mount namespace (a test that re-executes itself
// with CLONE_NEWNS): the bind mounts would otherwise hide them host-wide.
// It returns the paths it covered.
func HideTools(t testing.TB, names ...string) []string {
	t.Helper()
	var hidden []string
	dirs := append(filepath.SplitList(os.Getenv("PATH")), "/usr/sbin", "/usr/bin", "/sbin", "/bin")
	for _, name := range names {
		for _, d := range dirs {
			p := filepath.Join(d, name)
			if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
				continue
			}
			if err := unix.Mount("/dev/null", p, "", unix.MS_BIND, ""); err != nil {
				t.Fatalf("hide %s: %v", p, err)
			}
			hidden = append(hidden, p)
		}
		if p, err := exec.LookPath(name); err == nil {
			t.Fatalf("%s is still found at %s", name, p)
		}
	}
	return hidden
}

// InCI reports whether the tests run in CI (CI set, as CI systems do):
// there a test that cannot run fails instead of skipping.
func InCI() bool { return os.Getenv("CI") != "" }
