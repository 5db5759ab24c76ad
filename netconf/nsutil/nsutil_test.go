package nsutil

import (
	"github.com/vishvananda/netlink"
	"testing"
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
