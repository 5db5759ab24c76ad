package nsutil

import (
	"os"
	"testing"

	"github.com/vishvananda/netns"
)

// RequireRoot skips a test that needs CAP_NET_ADMIN when not root, except
// under CI (CI=true), where a skip would hide that the namespace tests did
// not run: there it fails instead.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("namespace tests must run as root in CI (euid %d)", os.Geteuid())
	}
	t.Skip("needs root to create network namespaces")
}

// NewTestNS creates a throwaway named namespace for t and deletes it when
// the test ends, whatever the outcome.
func NewTestNS(t testing.TB, prefix string) (string, netns.NsHandle) {
	t.Helper()
	RequireRoot(t)
	name := UniqueName(prefix)
	h, err := NewNamed(name)
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		h.Close()
		if err := DeleteNamed(name); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name, h
}
