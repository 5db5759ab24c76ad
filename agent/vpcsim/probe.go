package vpcsim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/ec2net/ec2net/agent/imds/fakeimds"
	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ProbeTimeout bounds a probe whose context has no deadline. Passing
// probes take a few milliseconds; a failing one costs its whole timeout.
const ProbeTimeout = time.Second

// ProbeResult is what a passing probe observed.
type ProbeResult struct {
	// SeenSource is the source address the far end saw.
	SeenSource netip.Addr
	Latency    time.Duration
}

func withProbeTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, ProbeTimeout)
}

// IMDSAddrIPv6 is IMDS's IPv6 address (Nitro instances), also served.
var IMDSAddrIPv6 = netip.MustParseAddr("fd00:ec2::254")

// dialIn connects from namespace h, bound to src when valid.
func dialIn(ctx context.Context, h netns.NsHandle, src netip.Addr, dst netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{}
	if src.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: net.IP(src.AsSlice())}
		if src.Is6() && routeLocal(h, src) {
			// Linux binds an IPv6 address that is local through a route
			// alone (anyip) only with IPV6_FREEBIND; IPv4 checks routes.
			d.Control = nsutil.FreeBind
		}
	}
	var conn net.Conn
	// The socket is created on the locked thread, hence in h; it stays
	// there after the thread switches back.
	err := nsutil.Do(h, func() error {
		var err error
		conn, err = d.DialContext(ctx, "tcp", dst.String())
		return err
	})
	return conn, err
}

// anyIP reports whether a is local through a local route covering more
// than itself (ec2net's anyip mode for delegated prefixes).
func anyIP(nl *netlink.Handle, a netip.Addr) bool {
	routes, err := nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return false
	}
	for _, r := range routes {
		if r.Type != unix.RTN_LOCAL || r.Dst == nil {
			continue
		}
		if p, ok := netipx(r.Dst); ok && p.Bits() < a.BitLen() && p.Contains(a) {
			return true
		}
	}
	return false
}

// routeLocal reports whether a is local in h through an anyip route.
func routeLocal(h netns.NsHandle, a netip.Addr) bool {
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return false
	}
	defer nl.Close()
	return anyIP(nl, a)
}

func netipx(n *net.IPNet) (netip.Prefix, bool) {
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones), true
}

// waitUsable returns once a is assigned in namespace h and usable as a
// source (not tentative, as IPv6 addresses are during duplicate address
// detection or before the kernel has seen the link's carrier), or fails
// at once when a is not assigned at all (an address local through an
// anyip route counts as assigned).
func waitUsable(ctx context.Context, h netns.NsHandle, a netip.Addr) error {
	if !a.IsValid() {
		return nil
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return err
	}
	defer nl.Close()
	for {
		addrs, err := nl.AddrList(nil, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		found, tentative := false, false
		for _, x := range addrs {
			if xa, ok := netip.AddrFromSlice(x.IP); ok && xa.Unmap() == a {
				found = true
				tentative = x.Flags&unix.IFA_F_TENTATIVE != 0
			}
		}
		switch {
		case !found && anyIP(nl, a):
			return nil // a delegated prefix's address, local through a route
		case !found:
			return fmt.Errorf("%s is not assigned in the instance", a)
		case !tentative:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s stayed tentative (duplicate address detection or no carrier): %w", a, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// remoteFor picks the remote address of src's family.
func (v *VPC) remoteFor(src netip.Addr) netip.Addr {
	if src.Is4() {
		return v.RemoteIPv4
	}
	return v.RemoteIPv6
}

// ProbeTCP connects from the (first) instance, bound to src, to the remote
// host's echo listener and returns the source address the remote host saw.
func (v *VPC) ProbeTCP(ctx context.Context, src netip.Addr) (ProbeResult, error) {
	return v.def.ProbeTCP(ctx, src)
}

// ProbeTCP connects from the instance, bound to src, to the remote host's
// echo listener and returns the source address the remote host saw.
func (i *Instance) ProbeTCP(ctx context.Context, src netip.Addr) (ProbeResult, error) {
	v := i.v
	h, err := i.handle()
	if err != nil {
		return ProbeResult{}, err
	}
	ctx, cancel := withProbeTimeout(ctx)
	defer cancel()
	dst := netip.AddrPortFrom(v.remoteFor(src.Unmap()), EchoPort)
	start := time.Now()
	if err := waitUsable(ctx, h, src.Unmap()); err != nil {
		return ProbeResult{}, fmt.Errorf("TCP %s -> %s: %w", src, dst, err)
	}
	conn, err := dialIn(ctx, h, src.Unmap(), dst)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("TCP %s -> %s (instance to remote): %w", src, dst, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return ProbeResult{}, fmt.Errorf("TCP %s -> %s: connected but no echo: %w", src, dst, err)
	}
	seen, err := netip.ParseAddr(strings.TrimSpace(line))
	if err != nil {
		return ProbeResult{}, fmt.Errorf("TCP %s -> %s: bad echo %q", src, dst, line)
	}
	return ProbeResult{SeenSource: seen, Latency: time.Since(start)}, nil
}

// ProbeInbound connects from the remote host to dst:port in the (first)
// instance (a listener bound to dst for the probe) and returns the source
// address the instance saw.
func (v *VPC) ProbeInbound(ctx context.Context, dst netip.Addr) (ProbeResult, error) {
	return v.def.ProbeInbound(ctx, dst)
}

// ProbeInbound connects from the remote host to dst:port in the instance
// (a listener bound to dst for the probe) and returns the source address
// the instance saw.
func (i *Instance) ProbeInbound(ctx context.Context, dst netip.Addr) (ProbeResult, error) {
	v := i.v
	ih, err := i.handle()
	if err != nil {
		return ProbeResult{}, err
	}
	rh, err := v.Handle(v.Remote)
	if err != nil {
		return ProbeResult{}, err
	}
	ctx, cancel := withProbeTimeout(ctx)
	defer cancel()
	dst = dst.Unmap()
	if err := waitUsable(ctx, ih, dst); err != nil {
		return ProbeResult{}, fmt.Errorf("inbound to %s: %w", dst, err)
	}
	ln, seenc, err := answerOnce(ih, dst)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("inbound to %s: listen in the instance (is %s assigned and not tentative?): %w", dst, dst, err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	target := netip.AddrPortFrom(dst, uint16(port))
	start := time.Now()
	conn, err := dialIn(ctx, rh, netip.Addr{}, target)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("TCP remote -> %s (inbound): %w", target, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
		return ProbeResult{}, fmt.Errorf("TCP remote -> %s: connected but no answer: %w", target, err)
	}
	select {
	case seen, ok := <-seenc:
		if !ok {
			return ProbeResult{}, fmt.Errorf("TCP remote -> %s: the instance's listener failed", target)
		}
		return ProbeResult{SeenSource: seen, Latency: time.Since(start)}, nil
	case <-ctx.Done():
		return ProbeResult{}, fmt.Errorf("TCP remote -> %s: %w", target, ctx.Err())
	}
}

// answerOnce listens in namespace h on dst (a free port) and answers the
// first connection with the source address it came from, which it also
// sends on the returned channel (closed instead when accepting fails).
// The caller closes the listener.
func answerOnce(h netns.NsHandle, dst netip.Addr) (net.Listener, <-chan netip.Addr, error) {
	var ln net.Listener
	err := nsutil.Do(h, func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 0).String())
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	seenc := make(chan netip.Addr, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(seenc)
			return
		}
		defer c.Close()
		seen := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		fmt.Fprintf(c, "%s\n", seen)
		seenc <- seen
	}()
	return ln, seenc, nil
}

// ProbeICMP pings the remote host once from the (first) instance with
// source src.
func (v *VPC) ProbeICMP(ctx context.Context, src netip.Addr) error { return v.def.ProbeICMP(ctx, src) }

// ProbeICMP pings the remote host once from the instance with source src
// (an ICMP echo from a raw socket bound to src; see icmp.go).
func (i *Instance) ProbeICMP(ctx context.Context, src netip.Addr) error {
	h, err := i.handle()
	if err != nil {
		return err
	}
	ctx, cancel := withProbeTimeout(ctx)
	defer cancel()
	src = src.Unmap()
	dst := i.v.remoteFor(src)
	if err := waitUsable(ctx, h, src); err != nil {
		return fmt.Errorf("ICMP %s -> %s: %w", src, dst, err)
	}
	if err := echoICMP(ctx, h, src, dst); err != nil {
		return fmt.Errorf("ICMP %s -> %s (instance to remote): %w", src, dst, err)
	}
	return nil
}

// ProbeIMDS asks the fake IMDS for a session token from inside the
// instance, as every IMDSv2 client does first.
func (v *VPC) ProbeIMDS(ctx context.Context) error { return v.def.ProbeIMDS(ctx) }

// ProbeIMDSIPv6 is ProbeIMDS over IPv6 (fd00:ec2::254).
func (v *VPC) ProbeIMDSIPv6(ctx context.Context) error { return v.def.ProbeIMDSIPv6(ctx) }

// ProbeIMDS asks the instance's IMDS for a session token from inside the
// instance.
func (i *Instance) ProbeIMDS(ctx context.Context) error {
	_, err := i.GetIMDS(ctx, IMDSAddr, "")
	return err
}

// ProbeIMDSIPv6 is ProbeIMDS over IPv6 (fd00:ec2::254).
func (i *Instance) ProbeIMDSIPv6(ctx context.Context) error {
	_, err := i.GetIMDS(ctx, IMDSAddrIPv6, "")
	return err
}

// GetIMDS fetches a token from inside the instance from IMDS at addr and,
// when path is not empty, GETs /latest/meta-data/<path> with it and returns
// the body: what the instance itself sees.
func (i *Instance) GetIMDS(ctx context.Context, addr netip.Addr, path string) (string, error) {
	h, err := i.handle()
	if err != nil {
		return "", err
	}
	ctx, cancel := withProbeTimeout(ctx)
	defer cancel()
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, address string) (net.Conn, error) {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return nil, err
			}
			return dialIn(ctx, h, netip.Addr{}, ap)
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	base := "http://" + netip.AddrPortFrom(addr, 80).String() + "/latest/"
	do := func(method, url string, hdr [2]string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, method, url, nil)
		if err != nil {
			return "", err
		}
		req.Header.Set(hdr[0], hdr[1])
		resp, err := client.Do(req)
		if err != nil {
			return "", fmt.Errorf("IMDS from the instance: %w", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			return "", fmt.Errorf("IMDS from the instance: %s %s: %s", method, url, resp.Status)
		}
		return string(body), nil
	}
	token, err := do(http.MethodPut, base+"api/token", [2]string{fakeimds.TokenTTLHeader, "60"})
	if err != nil || path == "" {
		return "", err
	}
	return do(http.MethodGet, base+"meta-data/"+strings.TrimPrefix(path, "/"), [2]string{fakeimds.TokenHeader, token})
}

// echoServer accepts TCP connections and writes back the client's address
// as it saw it, one line.
type echoServer struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	seen []netip.Addr
}

func startEcho(h netns.NsHandle, port int) (*echoServer, error) {
	var ln net.Listener
	err := nsutil.Do(h, func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port)) // dual-stack
		return err
	})
	if err != nil {
		return nil, err
	}
	s := &echoServer{ln: ln}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *echoServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		seen := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		s.mu.Lock()
		s.seen = append(s.seen, seen)
		s.mu.Unlock()
		_ = c.SetDeadline(time.Now().Add(ProbeTimeout))
		fmt.Fprintf(c, "%s\n", seen)
		c.Close()
	}
}

func (s *echoServer) close() {
	s.ln.Close()
	s.wg.Wait()
}

// RemoteSeen returns the source address of every connection the remote
// host's echo listener accepted, oldest first.
func (v *VPC) RemoteSeen() []netip.Addr {
	v.mu.Lock()
	e := v.echo
	v.mu.Unlock()
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]netip.Addr(nil), e.seen...)
}

// AddrReport is the outcome of every probe for one instance address.
type AddrReport struct {
	Addr    netip.Addr
	Out     ProbeResult // TCP instance -> remote, bound to Addr
	OutErr  error
	In      ProbeResult // TCP remote -> Addr
	InErr   error
	ICMPErr error // ping remote from Addr
}

// OK says every probe passed and each end saw the right address.
func (r AddrReport) OK() bool {
	return r.OutErr == nil && r.InErr == nil && r.ICMPErr == nil && r.Out.SeenSource == r.Addr
}

// Failed says every probe failed: what the source/destination check does
// to an address the instance routes out of the wrong ENI.
func (r AddrReport) Failed() bool {
	return r.OutErr != nil && r.InErr != nil && r.ICMPErr != nil
}

// String is one line for logs and the demo.
func (r AddrReport) String() string {
	word := func(err error) string {
		if err == nil {
			return "ok"
		}
		return "FAIL"
	}
	out := word(r.OutErr)
	if r.OutErr == nil {
		out += " (remote saw " + r.Out.SeenSource.String() + ")"
	}
	return fmt.Sprintf("%-26s tcp-out %-36s tcp-in %-4s icmp %s", r.Addr, out, word(r.InErr), word(r.ICMPErr))
}

// ProbeAddrs runs ProbeTCP, ProbeInbound and ProbeICMP for every address
// of the (first) instance at once (a failing probe costs its whole
// timeout, so they run in parallel) and returns one report per address, in
// the order given.
func (v *VPC) ProbeAddrs(ctx context.Context, addrs ...netip.Addr) []AddrReport {
	return v.def.ProbeAddrs(ctx, addrs...)
}

// ProbeAddrs is VPC.ProbeAddrs for this instance.
func (i *Instance) ProbeAddrs(ctx context.Context, addrs ...netip.Addr) []AddrReport {
	reports := make([]AddrReport, len(addrs))
	var wg sync.WaitGroup
	for k, a := range addrs {
		reports[k].Addr = a.Unmap()
		r := &reports[k]
		wg.Add(3)
		go func() { defer wg.Done(); r.Out, r.OutErr = i.ProbeTCP(ctx, r.Addr) }()
		go func() { defer wg.Done(); r.In, r.InErr = i.ProbeInbound(ctx, r.Addr) }()
		go func() { defer wg.Done(); r.ICMPErr = i.ProbeICMP(ctx, r.Addr) }()
	}
	wg.Wait()
	return reports
}
