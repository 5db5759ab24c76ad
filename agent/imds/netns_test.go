package imds

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// blackHoleNS makes a namespace that looks like a machine off EC2: a
// default route through a gateway nobody is (a veth pair whose other end
// has no address, so neighbour resolution never completes), so a
// connection to 169.254.169.254 neither succeeds nor fails fast.
func blackHoleNS(t *testing.T) netns.NsHandle {
	t.Helper()
	_, ns := nstest.NewTestNS(t, "imdsbh")
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink"}, PeerName: "nowhere"}); err != nil {
		t.Fatal(err)
	}
	link, err := h.LinkByName("uplink")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := h.LinkByName("nowhere")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("100.64.0.10/24")
	if err := h.AddrAdd(link, addr); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.ParseIP("100.64.0.1")}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// nsHTTPClient dials inside ns (the transport dials on its own
// goroutines, so the socket is made on a thread switched into ns).
func nsHTTPClient(t *testing.T, ns netns.NsHandle) *http.Client {
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := nsutil.Do(ns, func() (err error) {
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// Off EC2 (169.254.169.254 black-holed), a snapshot with the default
// options gives up after the first-contact bound with ErrUnreachable,
// instead of going through 4 attempts of 2 s.
func TestBlackHoledIMDSInNamespace(t *testing.T) {
	ns := blackHoleNS(t)
	c := newClient(t, Options{HTTPClient: nsHTTPClient(t, ns)}) // defaults: 169.254.169.254, 2.5 s
	start := time.Now()
	_, err := c.Snapshot(ctxT(t))
	took := time.Since(start)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err %v, want ErrUnreachable", err)
	}
	// 2 s for the first attempt, the second cut at 2.5 s: not 4.
	if st := c.Stats(); st.Requests > 2 || st.NetworkError != st.Requests {
		t.Fatalf("stats %v: want the two attempts the first-contact bound allows", st)
	}
	// The bound is the point (issue 9: answer within 3 s off EC2); the
	// margin is for a loaded machine. Without it this takes over 8 s.
	if took > DefaultFirstContact+2*time.Second {
		t.Fatalf("gave up after %v (first-contact bound %v)", took, DefaultFirstContact)
	}
}
