package packaging

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netns"
)

// probeEvery is the probe cadence per address; probeTimeout bounds one
// probe (a lost SYN costs the whole of it, so outages show as roughly
// outage/probeEvery lost probes).
const (
	probeEvery   = 100 * time.Millisecond
	probeTimeout = time.Second
)

// eventRecord is what happened during one event of a cell: probes lost
// per address, and deletions seen by ip monitor per object.
type eventRecord struct {
	name       string
	start, end time.Time
	sent, lost map[netip.Addr]int
	firstErr   map[netip.Addr]string // why the first lost probe of an address failed
	deleted    map[string]int        // normalised ip monitor line -> count
	badDefault []string              // main-table defaults via a secondary ENI at a metric <= the primary's
	note       string
}

// maxLost is the address that lost the most probes.
func (e *eventRecord) maxLost() (netip.Addr, int) {
	var worst netip.Addr
	n := 0
	for a, l := range e.lost {
		if l > n || (l == n && a.Less(worst)) {
			worst, n = a, l
		}
	}
	return worst, n
}

func (e *eventRecord) maxDeleted() (string, int) {
	var worst string
	n := 0
	for k, c := range e.deleted {
		if c > n || (c == n && k < worst) {
			worst, n = k, c
		}
	}
	return worst, n
}

// prober probes every registered address every probeEvery from the
// simulated instance to the remote host and charges each lost probe to
// the event current when it was sent; a monitor charges deletions the
// same way.
type prober struct {
	t      testing.TB
	vpc    *vpcsim.VPC
	ns     netns.NsHandle // the instance
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	addrs  []netip.Addr
	cur    *eventRecord
	events []*eventRecord
	mon    *exec.Cmd
}

func startProber(t testing.TB, vpc *vpcsim.VPC) *prober {
	ns, err := vpc.Handle(vpc.Instance)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &prober{t: t, vpc: vpc, ns: ns, cancel: cancel}
	p.begin("start")
	if err := p.startMonitor(ctx); err != nil {
		cancel()
		t.Fatalf("ip monitor in the instance: %v", err)
	}
	p.wg.Add(1)
	go p.loop(ctx)
	t.Cleanup(p.stop)
	return p
}

// watch adds addresses to the probed set (once they are configured).
func (p *prober) watch(addrs ...netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range addrs {
		if !slices.Contains(p.addrs, a) {
			p.addrs = append(p.addrs, a)
		}
	}
}

// begin ends the current event and starts a new one.
func (p *prober) begin(name string) *eventRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.cur != nil {
		p.cur.end = now
	}
	p.cur = &eventRecord{name: name, start: now, sent: map[netip.Addr]int{}, lost: map[netip.Addr]int{},
		firstErr: map[netip.Addr]string{}, deleted: map[string]int{}}
	p.events = append(p.events, p.cur)
	return p.cur
}

func (p *prober) loop(ctx context.Context) {
	defer p.wg.Done()
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.mu.Lock()
		ev, addrs := p.cur, slices.Clone(p.addrs)
		for _, a := range addrs {
			ev.sent[a]++
		}
		p.mu.Unlock()
		for _, a := range addrs {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				pctx, cancel := context.WithTimeout(ctx, probeTimeout)
				defer cancel()
				err := p.probe(pctx, a)
				if ctx.Err() != nil {
					return // the prober stopped: not a loss
				}
				if err != nil {
					p.mu.Lock()
					ev.lost[a]++
					if ev.firstErr[a] == "" {
						ev.firstErr[a] = err.Error()
					}
					p.mu.Unlock()
				}
			}()
		}
	}
}

// probe connects from the instance, bound to src, to the remote host's
// echo listener and checks it saw src. It does what vpcsim.ProbeTCP does
// without taking the VPC's lock, which a concurrent Attach holds for
// hundreds of milliseconds (that would count as lost probes on every
// address), and without a netlink round trip per probe: a tentative or
// missing address fails at bind, which is a lost probe too.
func (p *prober) probe(ctx context.Context, src netip.Addr) error {
	remote := p.vpc.RemoteIPv4
	if src.Is6() {
		remote = p.vpc.RemoteIPv6
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IP(src.AsSlice())}}
	var conn net.Conn
	err := nsutil.Do(p.ns, func() error {
		var err error
		conn, err = d.DialContext(ctx, "tcp", netip.AddrPortFrom(remote, vpcsim.EchoPort).String())
		return err
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no echo: %w", err)
	}
	if seen := strings.TrimSpace(line); seen != src.String() {
		return fmt.Errorf("remote saw %s", seen)
	}
	return nil
}

// monitorNoise matches deletions that follow from others and say nothing
// about a fight: the kernel's local/broadcast/multicast and link-local
// entries, which go with their address or link.
var monitorNoise = regexp.MustCompile(`\b(table local|fe80:|ff00::|multicast|broadcast)\b|^Deleted local `)

// monitorVolatile strips what differs between two deletions of the same
// object: timestamps, lifetimes, expiry, cache details.
var monitorVolatile = regexp.MustCompile(`^\[[^\]]*\]\s*|\s+(valid_lft|preferred_lft|expires)\s+\S+|\s+\\\s*|\s+(pref medium|linkdown)`)

func (p *prober) startMonitor(ctx context.Context) error {
	cmd, err := p.vpc.CommandContext(ctx, p.vpc.Instance, "ip", "-ts", "-o", "monitor", "address", "route", "rule")
	if err != nil {
		return err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	p.mon = cmd
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := monitorVolatile.ReplaceAllString(sc.Text(), " ")
			line = strings.Join(strings.Fields(line), " ")
			if !strings.HasPrefix(line, "Deleted ") || monitorNoise.MatchString(line) {
				continue
			}
			p.mu.Lock()
			p.cur.deleted[strings.TrimPrefix(line, "Deleted ")]++
			p.mu.Unlock()
		}
	}()
	return nil
}

func (p *prober) stop() {
	p.cancel()
	if p.mon != nil && p.mon.Process != nil {
		_ = p.mon.Process.Kill()
		_ = p.mon.Wait()
	}
	p.wg.Wait()
	p.mu.Lock()
	if p.cur != nil && p.cur.end.IsZero() {
		p.cur.end = time.Now()
	}
	p.mu.Unlock()
}

func sortedAddrs(m map[netip.Addr]int) []netip.Addr {
	keys := make([]netip.Addr, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	return keys
}

// deletionKinds counts an event's deletions by kind.
func (e *eventRecord) deletionKinds() (rules, routes, addrs int) {
	for k, c := range e.deleted {
		switch {
		case strings.Contains(k, " inet"):
			addrs += c
		case strings.Contains(k, " lookup ") || strings.HasPrefix(k, "from "):
			rules += c
		default:
			routes += c
		}
	}
	return rules, routes, addrs
}

// report renders one line per event: every address that lost probes,
// deletions by kind and the most often deleted object, bad defaults.
func (p *prober) report() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	for _, e := range p.events {
		if e.name == "start" {
			continue
		}
		losses := []string{}
		for _, k := range sortedAddrs(e.lost) {
			losses = append(losses, fmt.Sprintf("%s:%d", k, e.lost[k]))
		}
		lost := "none lost"
		if len(losses) > 0 {
			lost = "lost " + strings.Join(losses, " ")
		}
		rules, routes, addrs := e.deletionKinds()
		obj, del := e.maxDeleted()
		fmt.Fprintf(&b, "  %-12s %5.1fs  %s  deleted: %d rules %d routes %d addresses", e.name, e.end.Sub(e.start).Seconds(), lost, rules, routes, addrs)
		if del > 1 {
			fmt.Fprintf(&b, " (%d x %q)", del, obj)
		}
		if len(e.badDefault) > 0 {
			fmt.Fprintf(&b, "  BAD DEFAULT %v", e.badDefault)
		}
		if e.note != "" {
			fmt.Fprintf(&b, "  (%s)", e.note)
		}
		if a, n := e.maxLost(); n > 0 {
			fmt.Fprintf(&b, "\n               first failure of %s: %s", a, e.firstErr[a])
		}
		b.WriteString("\n")
	}
	return b.String()
}

// events returns the recorded events (not "start").
func (p *prober) recorded() []*eventRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*eventRecord
	for _, e := range p.events {
		if e.name != "start" {
			out = append(out, e)
		}
	}
	return out
}
