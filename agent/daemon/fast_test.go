package daemon

// The fast tier: the daemon's scheduling decisions with a fake IMDS, a
// fake namespace and a fake event stream. No root, no namespaces, well
// under a second; the namespace tests in daemon_test.go are the proof.

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf"
	"github.com/ec2net/ec2net/netconf/plan"
	"go.uber.org/zap/zaptest"
)

// fakeIMDS counts reads; each read waits for gate (when set) and returns
// fail (when set) or a snapshot with one complete ENI.
type fakeIMDS struct {
	mu    sync.Mutex
	reads int
	gate  chan struct{}
	fail  error
	extra []imds.ENI // listed beside the primary
	// fast: reads of exactly these ENIs pass the gate (a new ENI's read
	// beside a refresh that the gate holds up).
	fast []string
	// late: listed from the second read that passes the gate on (IMDS
	// lists a new ENI a moment after its link appears).
	late      *imds.ENI
	lateReads int
}

func (f *fakeIMDS) Snapshot(ctx context.Context) (*imds.Snapshot, error) {
	return f.read(ctx, nil)
}

func (f *fakeIMDS) read(ctx context.Context, macs []string) (*imds.Snapshot, error) {
	f.mu.Lock()
	f.reads++
	gate, fail, extra := f.gate, f.fail, f.extra
	if f.fast != nil && slices.Equal(macs, f.fast) {
		gate = nil
	}
	if f.late != nil && gate == nil {
		if f.lateReads++; f.lateReads > 1 {
			extra = append(slices.Clone(extra), *f.late)
		}
	}
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail != nil {
		return nil, fail
	}
	return &imds.Snapshot{PrimaryMAC: "02:00:00:00:00:01", Taken: time.Now(), ENIs: append([]imds.ENI{
		{MAC: "02:00:00:00:00:01", Primary: true, InterfaceID: "eni-01", State: imds.Complete}}, extra...)}, nil
}

func (f *fakeIMDS) Settle(_ context.Context, s *imds.Snapshot, _ func(*imds.ENI) bool, _ time.Duration) *imds.Snapshot {
	return s
}

func (f *fakeIMDS) ReadENIs(ctx context.Context, _ *imds.Snapshot, macs []string) (*imds.Snapshot, error) {
	return f.read(ctx, macs)
}

func (f *fakeIMDS) Peek(context.Context, *imds.ENI) (bool, error) { return false, nil }

func (f *fakeIMDS) Forget(string) {}

func (f *fakeIMDS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// fakeNS counts applies; restores says what each apply restored.
type fakeNS struct {
	mu       sync.Mutex
	applies  int
	snaps    []*imds.Snapshot
	links    []plan.LinkInfo
	dir      string
	restores []netconf.Change
}

func (f *fakeNS) Plan(*imds.Snapshot, config.Config) (*netconf.Plan, error) {
	return &netconf.Plan{}, nil
}

func (f *fakeNS) Apply(s *imds.Snapshot, _ config.Config) (*netconf.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	f.snaps = append(f.snaps, s)
	return &netconf.Result{ENIs: []netconf.ENIResult{{MAC: "02:00:00:00:00:02", Disposition: plan.Configure, Applied: f.restores}}}, nil
}

func (f *fakeNS) Revert([]netconf.Change) (*netconf.Result, error) { return &netconf.Result{}, nil }

func (f *fakeNS) Links() ([]plan.LinkInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]plan.LinkInfo(nil), f.links...), nil
}

func (f *fakeNS) StateDir() string { return f.dir }

func (f *fakeNS) VPCCNISigns() ([]string, error) { return nil, nil }

func (f *fakeNS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applies
}

type fakeEvents struct {
	links, dels, done chan struct{}
}

func newFakeEvents() *fakeEvents {
	return &fakeEvents{links: make(chan struct{}, 1), dels: make(chan struct{}, 1), done: make(chan struct{})}
}
func (e *fakeEvents) LinksChanged() <-chan struct{} { return e.links }
func (e *fakeEvents) Deletions() <-chan struct{}    { return e.dels }
func (e *fakeEvents) Done() <-chan struct{}         { return e.done }
func (e *fakeEvents) TakeDeleted() netconf.Deleted  { return netconf.Deleted{Rules: 1} }
func (e *fakeEvents) Err() error                    { return nil }
func (e *fakeEvents) Close()                        {}
func signalOne(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

type fastBed struct {
	imds   *fakeIMDS
	ns     *fakeNS
	ev     *fakeEvents
	sigs   chan os.Signal
	cancel context.CancelFunc
	done   chan error
}

func startFast(t *testing.T, src *fakeIMDS, ns *fakeNS) *fastBed {
	t.Helper()
	cfg := config.Default()
	cfg.RefreshInterval = time.Hour
	cfg.RemoveAfterTime = 0
	ns.dir = t.TempDir()
	b := &fastBed{imds: src, ns: ns, ev: newFakeEvents(), sigs: make(chan os.Signal, 1), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go func() {
		b.done <- Run(ctx, Options{Config: cfg, Logger: zaptest.NewLogger(t), IMDS: src, Reconciler: ns,
			Watch: func() (Events, error) { return b.ev, nil }, Notify: func(string) {}, Signals: b.sigs})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-b.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return b
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A burst of link events during a read causes one more read, not one per
// event.
func TestFastBurstOfLinkEventsCausesOneRead(t *testing.T) {
	// The ENI is listed and complete: an unlisted MAC would add timed
	// propagation re-reads, which are not what this test counts.
	src := &fakeIMDS{gate: make(chan struct{}), extra: []imds.ENI{
		{MAC: "02:00:00:00:00:02", InterfaceID: "eni-02", DeviceNumber: 1, State: imds.Complete}}}
	ns := &fakeNS{}
	b := startFast(t, src, ns)
	waitUntil(t, "first read started", func() bool { return src.count() == 1 })
	for i := 0; i < 100; i++ {
		ns.mu.Lock()
		ns.links = append(ns.links, plan.LinkInfo{Index: 10 + i, Name: "eth1", MAC: "02:00:00:00:00:02"})
		ns.mu.Unlock()
		signalOne(b.ev.links)
	}
	close(src.gate) // the first read and everything after it complete at once
	waitUntil(t, "the follow-up read", func() bool { return src.count() >= 2 })
	// SIGHUP is one more read: if the burst had caused more than one,
	// the count would pass 3.
	waitUntil(t, "every link event handled", func() bool { return len(b.ev.links) == 0 })
	b.sigs <- os.Interrupt // not handled: a barrier through the loop
	b.sigs <- sighup
	waitUntil(t, "SIGHUP read", func() bool { return src.count() >= 3 })
	if n := src.count(); n != 3 {
		t.Errorf("%d reads for a burst of 100 link events and a SIGHUP, want 3", n)
	}
}

// Repairs of a one-off deletion are immediate; a program that keeps
// deleting what was just restored gets exponentially fewer repairs.
func TestFastDeletionStormIsRateLimited(t *testing.T) {
	src := &fakeIMDS{}
	ns := &fakeNS{restores: []netconf.Change{{Op: netconf.OpAdd, Kind: netconf.KindLink, LinkSet: netconf.LinkSetting{AltName: "eni-x"}}}}
	b := startFast(t, src, ns)
	waitUntil(t, "first apply", func() bool { return ns.count() == 1 })
	signalOne(b.ev.dels)
	waitUntil(t, "a one-off deletion repaired", func() bool { return ns.count() == 2 })
	stormEnd := time.Now().Add(400 * time.Millisecond)
	for time.Now().Before(stormEnd) {
		signalOne(b.ev.dels)
		time.Sleep(time.Millisecond) // the other program's pace, not synchronisation
	}
	// 400 ms of deletions: a few fast repairs until the fight is
	// recognised, then one per second at most.
	if n := ns.count(); n > 2+fightAfter+1 {
		t.Errorf("%d applies during a 400 ms deletion storm, want at most %d", n, 2+fightAfter+1)
	}
}

// While IMDS fails, reads back off and nothing is applied or removed.
func TestFastOutageBacksOffAndAppliesNothing(t *testing.T) {
	src := &fakeIMDS{fail: errors.New("connection refused")}
	ns := &fakeNS{}
	startFast(t, src, ns)
	start := time.Now()
	waitUntil(t, "four reads", func() bool { return src.count() >= 4 })
	// Backoff 100 ms, 200 ms, 400 ms (each shortened by up to 20 %).
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("four failing reads within %v: no backoff", d)
	}
	if n := ns.count(); n != 0 {
		t.Errorf("%d applies while IMDS never answered", n)
	}
}

var sighup = syscall.SIGHUP

// The cut-off guard: a change followed by an unanswered read is rolled
// back and its ENI held; IMDS answering again gives it one more try; a
// second cut-off holds it until its metadata changes.
func TestFastCutoffGuard(t *testing.T) {
	g := newCutoffGuard()
	now := time.Now()
	mac := "02:00:00:00:00:02"
	snap := &imds.Snapshot{ENIs: []imds.ENI{{MAC: mac, State: imds.Complete, DeviceNumber: 1}}}
	added := &netconf.Result{ENIs: []netconf.ENIResult{{MAC: mac, Applied: []netconf.Change{{Op: netconf.OpAdd, Kind: netconf.KindRule, MAC: mac}}}}}
	if !g.applied(added, now) {
		t.Fatal("an added rule is not a change to check")
	}
	if g.suspect(errors.New("503"), now.Add(time.Second)) {
		t.Error("an answer (503) taken for a cut-off")
	}
	if g.suspect(imds.ErrUnreachable, now.Add(2*time.Second)) {
		t.Error("no answer after IMDS had answered since the change taken for a cut-off")
	}
	g.applied(added, now)
	if !g.suspect(imds.ErrUnreachable, now.Add(time.Second)) {
		t.Fatal("no answer right after a change not suspected")
	}
	if undo := g.rollback(snap); len(undo) != 1 {
		t.Fatalf("rollback undoes %d changes", len(undo))
	}
	if e := g.filter(snap).ENIs[0]; e.State != imds.Invalid || !strings.Contains(e.Reason, "rolled back") {
		t.Fatalf("held ENI not marked: %+v", e)
	}
	if r := g.answered(snap); len(r) != 1 || g.filter(snap).ENIs[0].State != imds.Complete {
		t.Fatalf("first strike not released when IMDS answers: %v", r)
	}
	g.applied(added, now)
	if !g.suspect(context.DeadlineExceeded, now.Add(2*time.Second)) {
		t.Fatal("second cut-off not suspected")
	}
	g.rollback(snap)
	if r := g.answered(snap); len(r) != 0 {
		t.Fatalf("second strike released with the same metadata: %v", r)
	}
	changed := &imds.Snapshot{ENIs: []imds.ENI{{MAC: mac, State: imds.Complete, DeviceNumber: 2}}}
	if r := g.answered(changed); len(r) != 1 {
		t.Fatal("second strike not released when the metadata changed")
	}
	if g.applied(added, now); g.suspect(imds.ErrUnreachable, now.Add(cutoffWindow+time.Second)) {
		t.Error("a failure long after the change suspected")
	}
}

// Results arriving out of order: an older read changes only what nothing
// newer has read, and the newest listing says which ENIs exist.
func TestFastMergeKeepsTheFreshestRead(t *testing.T) {
	t0 := time.Now()
	snapOf := func(enis ...imds.ENI) *imds.Snapshot { return &imds.Snapshot{ENIs: enis} }
	a1 := imds.ENI{MAC: "02:00:00:00:00:0a", DeviceNumber: 1}
	b1 := imds.ENI{MAC: "02:00:00:00:00:0b", DeviceNumber: 2, State: imds.Pending}
	b2 := b1
	b2.State = imds.Complete
	a2 := a1
	a2.DeviceNumber = 7 // a stale value from the slow read
	var f freshness
	cur := snapOf(a1, b1)
	raw, _ := f.merge(nil, nil, readResult{raw: cur, snap: cur, started: t0, full: true})
	// A new link's read (started later) completes first: b is complete.
	fast := snapOf(a1, b2)
	raw, _ = f.merge(raw, raw, readResult{raw: fast, snap: fast, started: t0.Add(2 * time.Second), macs: []string{b2.MAC}})
	// Then the slow refresh that started before it, with old data for b
	// and its own (newer than t0) read of a.
	slow := snapOf(a2, b1)
	raw, _ = f.merge(raw, raw, readResult{raw: slow, snap: slow, started: t0.Add(time.Second), full: true})
	if got := raw.ENI(b1.MAC); got == nil || got.State != imds.Complete {
		t.Errorf("the older read overwrote the newer one: %+v", got)
	}
	if got := raw.ENI(a1.MAC); got == nil || got.DeviceNumber != 7 {
		t.Errorf("the slow read's own newer data for a was dropped: %+v", got)
	}
	// A newer listing without b drops it.
	gone := snapOf(a1)
	raw, _ = f.merge(raw, raw, readResult{raw: gone, snap: gone, started: t0.Add(3 * time.Second), macs: nil})
	if raw.ENI(b1.MAC) != nil || raw.ENI(a1.MAC) == nil {
		t.Errorf("after a listing without b: %+v", raw.ENIs)
	}
}

// A link appears while a refresh is held up (a trickling key) and IMDS
// lists its ENI only at the second read: the re-read of the unlisted link
// runs beside the refresh, as the attach's own read did, instead of
// queueing behind it.
func TestFastUnlistedLinkIsReReadBesideASlowRefresh(t *testing.T) {
	const mac = "02:00:00:00:00:03"
	src := &fakeIMDS{}
	ns := &fakeNS{}
	b := startFast(t, src, ns)
	waitUntil(t, "first apply", func() bool { return ns.count() == 1 })
	src.mu.Lock()
	src.gate, src.fast = make(chan struct{}), []string{mac}
	src.late = &imds.ENI{MAC: mac, InterfaceID: "eni-03", DeviceNumber: 2, State: imds.Complete}
	src.mu.Unlock()
	defer close(src.gate)
	b.sigs <- sighup // the refresh the gate holds
	waitUntil(t, "the refresh under way", func() bool { return src.count() == 2 })
	ns.mu.Lock()
	ns.links = append(ns.links, plan.LinkInfo{Index: 3, Name: "eth2", MAC: mac})
	ns.mu.Unlock()
	signalOne(b.ev.links)
	waitUntil(t, "an apply with the new ENI while the refresh is held", func() bool {
		ns.mu.Lock()
		defer ns.mu.Unlock()
		for _, s := range ns.snaps {
			if s.ENI(mac) != nil {
				return true
			}
		}
		return false
	})
}
