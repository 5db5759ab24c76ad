package daemon

// Helpers for the timeline benchmarks of issue 14 (timeline_*_test.go):
// daemons that read IMDS through the VPC router as `ec2net run` does on an
// instance (so their packets can be counted), a daemon on any instance of
// the VPC, the amazon-ec2-net-utils-like poll loop that is the anchor,
// packet counters in the router, and "when did every address carry
// traffic" watchers.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/agent/imds/fakeimds"
	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/ec2net/ec2net/netconf"
	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// samples is how many measurements a timeline benchmark takes: its
// default times b.N (make bench runs them with -benchtime 1x, since every
// benchmark also runs once with b.N = 1 before the requested count), or
// EC2NET_BENCH_SAMPLES when set (a quick run: EC2NET_BENCH_SAMPLES=3).
func samples(b *testing.B, def int) int {
	if s, err := strconv.Atoi(os.Getenv("EC2NET_BENCH_SAMPLES")); err == nil && s > 0 {
		def = s
	}
	return def * b.N
}

// pct returns the p-quantile of ds in milliseconds (nearest rank; with
// fewer than 100 samples p99 is the maximum).
func pct(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.999999) - 1
	return float64(s[max(0, min(len(s)-1, i))]) / float64(time.Millisecond)
}

// dialerIn dials from namespace ns (the socket stays there).
func dialerIn(ns netns.NsHandle, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := nsutil.Do(ns, func() (err error) {
			c, err = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// nsClient is an IMDS client with ec2net's defaults that reaches
// 169.254.169.254 from inside ns, through the VPC router, as `ec2net run`
// does on an instance (the transport mirrors imds' default one: a
// keep-alive pool as large as a pass needs).
func nsClient(tb testing.TB, ns netns.NsHandle) *imds.Client {
	tb.Helper()
	tr := &http.Transport{
		DialContext:           dialerIn(ns, 2*time.Second),
		MaxIdleConns:          imds.DefaultConcurrency + 1,
		MaxIdleConnsPerHost:   imds.DefaultConcurrency + 1,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 2 * time.Second,
		DisableCompression:    true,
	}
	tb.Cleanup(tr.CloseIdleConnections)
	c, err := imds.New(imds.Options{Endpoint: "http://169.254.169.254", Version: "bench", HTTPClient: &http.Client{Transport: tr}})
	must(tb, err)
	return c
}

// startOn runs an in-process daemon for inst (any instance of vpc) that
// reads IMDS through the router (nsClient); config as the harness's,
// changed by mutate; options changed by opts.
func startOn(tb testing.TB, vpc *vpcsim.VPC, inst *vpcsim.Instance, mutate func(*config.Config), opts func(*Options)) *harness {
	tb.Helper()
	ns, err := netns.GetFromName(inst.Name)
	must(tb, err)
	tb.Cleanup(func() { ns.Close() })
	nlh, err := netlink.NewHandleAt(ns)
	must(tb, err)
	tb.Cleanup(nlh.Close)
	cfg := config.Default()
	cfg.ReadyTimeout = 10 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	client := nsClient(tb, ns)
	// Info level: the netconf debug lines of 1,500-change passes would
	// dominate the output and the time.
	log := zap.NewNop()
	if testing.Verbose() && os.Getenv("EC2NET_BENCH_LOG") != "" {
		log, _ = zap.NewDevelopment()
	}
	rec, err := netconf.New(netconf.Options{NetNS: ns, StateDir: tb.TempDir(), Logger: log.Named("netconf")})
	must(tb, err)
	tb.Cleanup(func() { rec.Close() })
	h := &harness{t: tb, vpc: vpc, ns: ns, nl: nlh, client: client, done: make(chan error, 1), sigs: make(chan os.Signal, 1)}
	h.run(Options{Config: cfg, Logger: log.Named(inst.Name), IMDS: client, Reconciler: rec, NetNS: ns, Version: "bench"}, opts, inst.Name)
	return h
}

// anchorPoll is the anchor of issue 14: the loop amazon-ec2-net-utils
// runs for a new ENI (lib.sh: device-number read up to 60 times, 0.1 s
// apart), each read by its get_meta: a new IMDSv2 token (PUT, TTL 60)
// and a GET, each a new curl, so a new TCP connection for each request.
// It polls from inside ns at endpoint (host:port) until device-number is
// not "0" and returns when it noticed and what it cost.
type anchorResult struct {
	noticed        time.Time
	polls          int
	requests       int
	conns          int
	started, ended time.Time
}

func anchorPoll(ctx context.Context, ns netns.NsHandle, endpoint, mac string) (r anchorResult, err error) {
	r.started = time.Now()
	var conns atomic.Int64
	defer func() { r.conns = int(conns.Load()) }()
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conns.Add(1) // one per request: keep-alives are off
		// curl --connect-timeout 0.15, as get_meta calls it.
		return dialerIn(ns, 150*time.Millisecond)(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	do := func(method, path string, hdr [2]string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, method, "http://"+endpoint+"/latest/"+path, nil)
		if err != nil {
			return "", err
		}
		req.Header.Set(hdr[0], hdr[1])
		r.requests++
		resp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s %s: %s", method, path, resp.Status)
		}
		return strings.TrimSpace(string(body)), nil
	}
	for ctx.Err() == nil {
		r.polls++
		tok, err := do(http.MethodPut, "api/token", [2]string{fakeimds.TokenTTLHeader, "60"})
		if err == nil {
			dev, err := do(http.MethodGet, "meta-data/network/interfaces/macs/"+mac+"/device-number", [2]string{fakeimds.TokenHeader, tok})
			if err == nil && dev != "" && dev != "0" {
				r.noticed, r.ended = time.Now(), time.Now()
				return r, nil
			}
		}
		select { // sleep 0.1, as the shell loop does
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	r.ended = time.Now()
	return r, fmt.Errorf("anchor: device-number of %s still 0 after %d polls", mac, r.polls)
}

// portCounter counts TCP packets to and from ports in the router
// namespace (nftables counters, the packets the instance's link-local
// budget is about):
//
//	table inet ec2net_bench {
//		chain in  { type filter hook input priority 0;  tcp dport P counter }
//		chain out { type filter hook output priority 0; tcp sport P counter }
//	}
type portCounter struct {
	conn    *nftables.Conn
	table   *nftables.Table
	in, out *nftables.Chain
	ports   []uint16
}

func countPorts(tb testing.TB, ns netns.NsHandle, ports ...uint16) *portCounter {
	tb.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	must(tb, err)
	accept := nftables.ChainPolicyAccept
	pc := &portCounter{conn: c, ports: ports, table: &nftables.Table{Family: nftables.TableFamilyINet, Name: "ec2net_bench"}}
	c.AddTable(pc.table)
	pc.in = c.AddChain(&nftables.Chain{Table: pc.table, Name: "in", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	pc.out = c.AddChain(&nftables.Chain{Table: pc.table, Name: "out", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	for _, p := range ports {
		for _, ch := range []*nftables.Chain{pc.in, pc.out} {
			off := uint32(2) // dport
			if ch == pc.out {
				off = 0 // sport
			}
			c.AddRule(&nftables.Rule{Table: pc.table, Chain: ch, Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p)},
				&expr.Counter{},
			}})
		}
	}
	must(tb, c.Flush())
	tb.Cleanup(func() {
		c.DelTable(pc.table)
		_ = c.Flush()
	})
	return pc
}

// packets returns the packets counted for each port (both directions),
// in the order the ports were given.
func (pc *portCounter) packets() ([]uint64, error) {
	out := make([]uint64, len(pc.ports))
	for _, ch := range []*nftables.Chain{pc.in, pc.out} {
		rules, err := pc.conn.GetRules(pc.table, ch)
		if err != nil {
			return nil, err
		}
		if len(rules) != len(pc.ports) {
			return nil, fmt.Errorf("chain %s: %d rules, want %d", ch.Name, len(rules), len(pc.ports))
		}
		for i, r := range rules {
			for _, e := range r.Exprs {
				if c, ok := e.(*expr.Counter); ok {
					out[i] += c.Packets
				}
			}
		}
	}
	return out, nil
}

// trafficTimes probes every address from inside inst (TCP to the remote
// host with the address as source, through the router's source/destination
// check) until each passes once, a new attempt 1 ms after a failed one
// (each bounded by 10 ms: a working path answers in well under one), and
// returns when each first passed. The resolution is about 10 ms.
func trafficTimes(inst *vpcsim.Instance, addrs []netip.Addr, within time.Duration) (map[netip.Addr]time.Time, error) {
	deadline := time.Now().Add(within)
	var mu sync.Mutex
	got := map[netip.Addr]time.Time{}
	errs := make(chan error, len(addrs))
	for _, a := range addrs {
		go func() {
			var last error
			for time.Now().Before(deadline) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
				_, err := inst.ProbeTCP(ctx, a)
				cancel()
				if err == nil {
					mu.Lock()
					got[a] = time.Now()
					mu.Unlock()
					errs <- nil
					return
				}
				last = err
				time.Sleep(time.Millisecond) // the probe's cadence
			}
			errs <- fmt.Errorf("%s: no traffic within %v: %v", a, within, last)
		}()
	}
	var first error
	for range addrs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return got, first
}

// lastOf is the latest of the times.
func lastOf(ts map[netip.Addr]time.Time) time.Time {
	var l time.Time
	for _, t := range ts {
		if t.After(l) {
			l = t
		}
	}
	return l
}

// linkAddrs lists the addresses on the link with mac in h's namespace,
// or nil without such a link.
func linkAddrs(nl *netlink.Handle, mac string) []netip.Addr {
	links, err := nl.LinkList()
	if err != nil {
		return nil
	}
	for _, l := range links {
		if l.Attrs().HardwareAddr.String() != mac {
			continue
		}
		as, _ := nl.AddrList(l, unix.AF_UNSPEC)
		var out []netip.Addr
		for _, a := range as {
			if x, ok := netip.AddrFromSlice(a.IP); ok {
				out = append(out, x.Unmap())
			}
		}
		return out
	}
	return nil
}

// answeredAt connects from the remote host to dst, a new attempt every
// 10 ms (each bounded by 10 ms), until an instance accepts and names
// itself, and returns which one and when. Every instance of insts listens
// on dst (IP_FREEBIND: bound without the address being local), as
// vpcsim.ProbeAnswerer does with 100 ms between attempts; the finer
// cadence keeps the measured time within about 10 ms of when the path
// opened.
func answeredAt(vpc *vpcsim.VPC, insts []*vpcsim.Instance, dst netip.Addr, within time.Duration) (*vpcsim.Instance, time.Time, error) {
	remote, err := vpc.Handle(vpc.Remote)
	if err != nil {
		return nil, time.Time{}, err
	}
	names := map[string]*vpcsim.Instance{}
	port := 0
	for _, inst := range insts {
		h, err := vpc.Handle(inst.Name)
		if err != nil {
			return nil, time.Time{}, err
		}
		var ln net.Listener
		err = nsutil.Do(h, func() (err error) {
			lc := net.ListenConfig{Control: nsutil.FreeBind}
			ln, err = lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(dst, uint16(port)).String())
			return err
		})
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("listen on %s in %s: %w", dst, inst.Name, err)
		}
		defer ln.Close()
		port = ln.Addr().(*net.TCPAddr).Port
		names[inst.Name] = inst
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "%s\n", inst.Name)
				c.Close()
			}
		}()
	}
	target := netip.AddrPortFrom(dst, uint16(port)).String()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		next := time.Now().Add(10 * time.Millisecond)
		ctx, cancel := context.WithDeadline(context.Background(), next)
		var c net.Conn
		err := nsutil.Do(remote, func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, "tcp", target)
			return err
		})
		cancel()
		if err == nil {
			at := time.Now()
			_ = c.SetDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 64)
			n, rerr := c.Read(buf)
			c.Close()
			if inst := names[strings.TrimSpace(string(buf[:n]))]; inst != nil {
				return inst, at, nil
			}
			return nil, at, fmt.Errorf("%s: connected but no name (%v)", dst, rerr)
		}
		last = err
		time.Sleep(time.Until(next)) // the attempt's slot
	}
	return nil, time.Time{}, fmt.Errorf("%s: no instance answered within %v: %v", dst, within, last)
}
