package nsutil_test

import (
	"errors"
	"runtime"
	"testing"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestNewTestNS(t *testing.T) {
	_, h := nstest.NewTestNS(t, "ec2nt")
	c1, err := nsutil.Cookie(h)
	if err != nil {
		t.Fatal(err)
	}
	self, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	if cur, err := nsutil.Cookie(self); err != nil || cur == c1 {
		t.Errorf("the test namespace has the current one's cookie: %q %q %v", c1, cur, err)
	}
	hd, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer hd.Close()
	l, err := hd.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().Flags&1 == 0 {
		t.Fatal("lo down")
	}
	t.Log(c1)
}

func TestIsCurrentTellsOwnNamespaceFromOthers(t *testing.T) {
	_, other := nstest.NewTestNS(t, "ec2cur")
	self, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	if !nsutil.IsCurrent(self) || nsutil.ForNetlink(self).IsOpen() {
		t.Errorf("own namespace not recognised as current")
	}
	if nsutil.IsCurrent(other) || nsutil.ForNetlink(other) != other {
		t.Errorf("another namespace taken for the current one")
	}
	// Do in the current namespace must not need setns (CAP_SYS_ADMIN).
	ran := false
	if err := nsutil.Do(self, func() error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("Do(current) = %v, ran %v", err, ran)
	}
}

// Do runs fn inside the other namespace and leaves the caller's thread
// where it was, even when fn fails.
func TestDoRunsInsideAndLeavesTheCallerAlone(t *testing.T) {
	_, other := nstest.NewTestNS(t, "ec2do")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	inside := false
	err = nsutil.Do(other, func() error {
		inside = nsutil.IsCurrent(other)
		return errors.New("fn failed")
	})
	if err == nil || err.Error() != "fn failed" {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	if !inside {
		t.Error("fn did not run inside the namespace")
	}
	if !nsutil.IsCurrent(before) || nsutil.IsCurrent(other) {
		t.Error("the caller's thread changed namespace")
	}
}
