package main

// An EKS-style node: the Amazon VPC CNI hands one of eth1's secondary
// addresses to a pod (its veth, its rules, its table). ec2net must never
// put that address on the host: with secondary-enis = auto it sees the
// CNI and configures the primary ENI only, and the pod's traffic flows
// both ways after apply and under the daemon.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

type pod struct {
	ns   netns.NsHandle
	addr netip.Addr
}

// addCNIPod wires a pod the way the VPC CNI does: its address from eth1,
// a veth eni<11 hex> on the host, "to pod lookup main" at 512 and "from
// pod lookup 2" at 1536, table 2 through eth1, forwarding on.
func addCNIPod(t *testing.T, b *bed, addr netip.Addr) *pod {
	t.Helper()
	_, podNS := nstest.NewTestNS(t, "e2epod")
	inst, err := b.vpc.Handle(b.vpc.Instance)
	must(t, err)
	h, err := netlink.NewHandleAt(inst)
	must(t, err)
	defer h.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eni0a1b2c3d4e5"}, PeerName: "podeth0", PeerNamespace: netlink.NsFd(int(podNS))}
	must(t, h.LinkAdd(veth))
	must(t, b.vpc.Sysctl(b.vpc.Instance, "net.ipv4.ip_forward", "1"))
	must(t, b.vpc.Sysctl(b.vpc.Instance, "net.ipv4.conf.all.rp_filter", "2"))
	for _, c := range [][]string{
		{"ip", "addr", "add", "100.64.2.10/24", "dev", "eth1"}, // the CNI sets up its ENI's primary address
		{"ip", "link", "set", "eth1", "up"},
		{"ip", "link", "set", "eni0a1b2c3d4e5", "up"},
		{"ip", "route", "add", "100.64.2.1", "dev", "eth1", "scope", "link", "table", "2"},
		{"ip", "route", "add", "default", "via", "100.64.2.1", "dev", "eth1", "table", "2"},
		{"ip", "route", "add", addr.String(), "dev", "eni0a1b2c3d4e5", "scope", "link"},
		{"ip", "rule", "add", "to", addr.String(), "lookup", "main", "pref", "512"},
		{"ip", "rule", "add", "from", addr.String(), "lookup", "2", "pref", "1536"},
	} {
		if out, err := b.vpc.Exec(b.vpc.Instance, c...); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	hostMAC, err := h.LinkByName("eni0a1b2c3d4e5")
	must(t, err)
	ph, err := netlink.NewHandleAt(podNS)
	must(t, err)
	defer ph.Close()
	pl, err := ph.LinkByName("podeth0")
	must(t, err)
	must(t, ph.LinkSetUp(pl))
	must(t, ph.AddrAdd(pl, &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(addr.AsSlice()), Mask: net.CIDRMask(32, 32)}}))
	gw := net.ParseIP("169.254.1.1")
	must(t, ph.RouteAdd(&netlink.Route{LinkIndex: pl.Attrs().Index, Dst: &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}))
	must(t, ph.RouteAdd(&netlink.Route{LinkIndex: pl.Attrs().Index, Gw: gw, Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}}))
	must(t, ph.NeighAdd(&netlink.Neigh{LinkIndex: pl.Attrs().Index, IP: gw, HardwareAddr: hostMAC.Attrs().HardwareAddr,
		State: netlink.NUD_PERMANENT, Family: netlink.FAMILY_V4}))
	return &pod{ns: podNS, addr: addr}
}

// traffic checks the pod's connections both ways through the VPC router.
func (p *pod) traffic(b *bed) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var conn net.Conn
	err := nsutil.Do(p.ns, func() (err error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IP(p.addr.AsSlice())}}
		conn, err = d.DialContext(ctx, "tcp", netip.AddrPortFrom(b.vpc.RemoteIPv4, 7777).String())
		return err
	})
	if err != nil {
		return fmt.Errorf("pod -> remote: %w", err)
	}
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	seen, err := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if err != nil || !strings.Contains(seen, p.addr.String()) {
		return fmt.Errorf("pod -> remote: remote saw %q (%v)", seen, err)
	}
	var ln net.Listener
	if err := nsutil.Do(p.ns, func() (err error) { ln, err = net.Listen("tcp", p.addr.String()+":0"); return err }); err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			fmt.Fprintln(c, "pod")
			c.Close()
		}
	}()
	remote, err := b.vpc.Handle(b.vpc.Remote)
	if err != nil {
		return err
	}
	return nsutil.Do(remote, func() error {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return fmt.Errorf("remote -> pod: %w", err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if s, err := bufio.NewReader(c).ReadString('\n'); err != nil || s != "pod\n" {
			return fmt.Errorf("remote -> pod: %q %v", s, err)
		}
		return nil
	})
}

func TestVPCCNIPodTrafficSurvivesApplyAndDaemon(t *testing.T) {
	b := newBed(t, "e2ecni")
	// The CNI configuration directory, as the aws-node pod writes it.
	cniDir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(cniDir, "10-aws.conflist"), []byte(`{"name":"aws-cni"}`), 0o644))
	t.Setenv("EC2NET_CNI_CONF_DIR", cniDir)
	p := addCNIPod(t, b, netip.MustParseAddr("100.64.2.12"))
	if err := p.traffic(b); err != nil {
		t.Fatalf("the pod's traffic before ec2net: %v", err)
	}
	out, code := b.ec2net("apply")
	if code != 0 || !strings.Contains(out, "the Amazon VPC CNI manages this host's secondary ENIs") {
		t.Fatalf("apply on a CNI host: exit %d, want 0 and the note:\n%s", code, out)
	}
	if err := p.traffic(b); err != nil {
		t.Errorf("the pod's traffic after apply: %v", err)
	}
	if addrs := b.ip("-4", "addr", "show", "dev", "eth1"); strings.Contains(addrs, "100.64.2.12") {
		t.Errorf("the pod's address was put on the host:\n%s", addrs)
	}
	b.assertTraffic(b.primary.IPv4)

	daemon := b.startDaemon(t)
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(daemon.logs(), "configuring the primary ENI only") })
	if err := p.traffic(b); err != nil {
		t.Errorf("the pod's traffic under the daemon: %v", err)
	}
	daemon.stop(t)

	// The control: told to configure every ENI, ec2net would capture
	// the pod's address on the host.
	if _, code := b.ec2net("apply", "--secondary-enis", "all"); code != 0 {
		t.Fatalf("apply --secondary-enis all: exit %d", code)
	}
	if err := p.traffic(b); err == nil {
		t.Errorf("with secondary-enis = all the pod still works: this test cannot tell")
	}
}

type daemonProc struct {
	cmd  *os.Process
	buf  *strings.Builder
	done chan error
}

func (d *daemonProc) logs() string {
	logMu.Lock()
	defer logMu.Unlock()
	return d.buf.String()
}

func (d *daemonProc) stop(t *testing.T) {
	_ = d.cmd.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Errorf("daemon did not stop")
	}
}

// startDaemon runs `ec2net run` in the instance namespace.
func (b *bed) startDaemon(t *testing.T) *daemonProc {
	cmd, err := b.vpc.Command(b.vpc.Instance, ec2netBin, "run", "--imds-endpoint", "http://169.254.169.254",
		"--state-dir", b.stateDir, "--config", "/dev/null")
	must(t, err)
	buf := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = &syncWriter{b: buf}, &syncWriter{b: buf}
	must(t, cmd.Start())
	d := &daemonProc{cmd: cmd.Process, buf: buf, done: make(chan error, 1)}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		logMu.Lock()
		t.Logf("daemon log:\n%s", buf.String())
		logMu.Unlock()
	})
	return d
}

// syncWriter lets the daemon's two output streams and the test share a
// builder.
type syncWriter struct{ b *strings.Builder }

var logMu sync.Mutex

func (w *syncWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	return w.b.Write(p)
}
