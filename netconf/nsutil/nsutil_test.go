package nsutil

import (
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestNewTestNS(t *testing.T) {
	_, h := NewTestNS(t, "ec2nt")
	c1, err := Cookie(h)
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := Cookie(0)
	_ = cur
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
	_, other := NewTestNS(t, "ec2cur")
	self, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	if !IsCurrent(self) || ForNetlink(self).IsOpen() {
		t.Errorf("own namespace not recognised as current")
	}
	if IsCurrent(other) || ForNetlink(other) != other {
		t.Errorf("another namespace taken for the current one")
	}
	// Do in the current namespace must not need setns (CAP_SYS_ADMIN).
	ran := false
	if err := Do(self, func() error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("Do(current) = %v, ran %v", err, ran)
	}
}
