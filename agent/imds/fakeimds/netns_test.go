package fakeimds

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// addToLoopback puts addr on the namespace's lo, as the router namespace
// of a simulated VPC holds the IMDS address.
func addToLoopback(t *testing.T, ns netns.NsHandle, cidr string) {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	a.Flags = 0x02 // IFA_F_NODAD: usable at once
	if err := h.AddrAdd(lo, a); err != nil {
		t.Fatalf("add %s to lo: %v", cidr, err)
	}
	// The kernel installs an IPv6 address's local route (table local) from
	// a work queue even with NODAD, after the prefix route: until then
	// connecting fails with "network is unreachable". Wait until the
	// address resolves as local instead of racing it.
	waitFor(t, cidr+" local", func() bool {
		rs, err := h.RouteGet(a.IP)
		return err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL
	})
}

// getInNS does PUT token + GET path over one connection dialed inside ns
// (http.Transport dials on another goroutine, so the socket is made here,
// on the thread nsutil.Do switched).
func getInNS(t *testing.T, ns netns.NsHandle, hostPort, path string) (int, string) {
	t.Helper()
	var conn net.Conn
	if err := nsutil.Do(ns, func() (err error) {
		conn, err = net.Dial("tcp", hostPort)
		return err
	}); err != nil {
		t.Fatalf("dial %s in namespace: %v", hostPort, err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	roundTrip := func(req *http.Request) (int, string) {
		if err := req.Write(conn); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		if _, err := bufio.NewReader(resp.Body).WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b.String()
	}
	put, _ := http.NewRequest(http.MethodPut, "http://"+hostPort+"/latest/api/token", nil)
	put.Header.Set(TokenTTLHeader, "60")
	code, tok := roundTrip(put)
	if code != http.StatusOK {
		t.Fatalf("token PUT in namespace: %d", code)
	}
	get, _ := http.NewRequest(http.MethodGet, "http://"+hostPort+path, nil)
	get.Header.Set(TokenHeader, tok)
	return roundTrip(get)
}

func TestStartInNetNSServesLinkLocalEndpoint(t *testing.T) {
	nsName, ns := nstest.NewTestNS(t, "fimds")
	addToLoopback(t, ns, "169.254.169.254/32")
	s, err := Tree("real02")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := s.StartInNetNS(nsName, "169.254.169.254:80")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if ep != "http://169.254.169.254:80" {
		t.Fatalf("endpoint %q", ep)
	}
	code, body := getInNS(t, ns, "169.254.169.254:80", "/latest/meta-data/network/interfaces/macs/")
	if code != http.StatusOK || strings.Count(body, "/") != 2 {
		t.Fatalf("macs/ in namespace: %d %q", code, body)
	}
	if s.Requests("/latest/meta-data/network/interfaces/macs/") != 1 {
		t.Fatal("request not counted by this server")
	}
}

func TestStartInNetNSBeforeAddressExists(t *testing.T) {
	nsName, ns := nstest.NewTestNS(t, "fimds")
	s, _ := instance(t)
	// Listening first works (IP_FREEBIND); requests arrive once the IPv6
	// endpoint address is configured.
	ep, err := s.StartInNetNS(nsName, "[fd00:ec2::254]:80")
	if err != nil {
		t.Fatal(err)
	}
	if ep != "http://[fd00:ec2::254]:80" {
		t.Fatalf("endpoint %q", ep)
	}
	addToLoopback(t, ns, "fd00:ec2::254/128")
	code, body := getInNS(t, ns, "[fd00:ec2::254]:80", "/latest/meta-data/mac")
	if code != http.StatusOK || body != primary().MAC {
		t.Fatalf("mac in namespace: %d %q", code, body)
	}
}

func TestStartInNetNSUnknownNamespaceFails(t *testing.T) {
	s := New()
	defer s.Close()
	if _, err := s.StartInNetNS(nsutil.UniqueName("fimds-missing"), "169.254.169.254:80"); err == nil {
		t.Fatal("no error for a missing namespace")
	}
}
