package imds

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/imds/fakeimds"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// What the pass could not read by its deadline is Unknown, and the pass
// ends there instead of waiting for a slow key.
func TestPassDeadlineMakesTheRestUnknown(t *testing.T) {
	s := instance(2)
	o := fastOptions(startFake(t, s))
	o.RequestTimeout = time.Minute
	o.PassTimeout = 300 * time.Millisecond
	c := newClient(t, o)
	mustSnapshot(t, c)
	// "100.64.2.11" at one byte a second: 11 s, far past the deadline.
	s.SetFault("network/interfaces/macs/"+secondaryMAC(1)+"/local-ipv4s", fakeimds.Fault{Kind: fakeimds.FaultTrickle, Delay: time.Second})
	snap := mustSnapshot(t, c)
	e := mustENI(t, snap, secondaryMAC(1))
	wantState(t, e, Unknown, "deadline")
	if len(e.IPv4) != 0 {
		t.Fatalf("addresses %v from a read cut off by the deadline", e.IPv4)
	}
	wantState(t, mustENI(t, snap, primaryMAC), Complete, "")
	wantState(t, mustENI(t, snap, secondaryMAC(2)), Complete, "")
}

// One ENI's trickling key does not hold up the reads of the others: they
// all finish while it is still trickling.
func TestTricklingKeyDoesNotDelayOtherENIs(t *testing.T) {
	const n = 6
	s := instance(n)
	slow := macsBase + secondaryMAC(1) + "/local-ipv4s"
	var mu sync.Mutex
	var finished []string // paths in the order their answers ended
	ep := serveWrapped(t, s, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r)
			mu.Lock()
			finished = append(finished, r.URL.Path)
			mu.Unlock()
		})
	})
	o := fastOptions(ep)
	o.RequestTimeout = time.Minute
	c := newClient(t, o)
	// 11 bytes, 200 ms each.
	s.SetFault(strings.TrimPrefix(slow, "/latest/meta-data/"), fakeimds.Fault{Kind: fakeimds.FaultTrickle, Delay: 200 * time.Millisecond})
	snap := mustSnapshot(t, c)
	for _, e := range snap.ENIs {
		wantState(t, &e, Complete, "")
	}
	mu.Lock()
	defer mu.Unlock()
	at := slices.Index(finished, slow)
	for i := 2; i <= n; i++ {
		last := -1
		for j, p := range finished {
			if strings.HasPrefix(p, macsBase+secondaryMAC(i)+"/") {
				last = j
			}
		}
		if last < 0 || last > at {
			t.Fatalf("ENI %d's reads ended at %d, after the trickled key (%d): %v", i, last, at, finished)
		}
	}
}

// Until IMDS has answered once, a read gives up after FirstContact, with
// ErrUnreachable, and says once at info what it is waiting for.
func TestFirstContactBound(t *testing.T) {
	ep, stop, err := fakeimds.BlackHole("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	core, logs := observer.New(zapcore.InfoLevel)
	o := fastOptions(ep)
	o.RequestTimeout = 5 * time.Second
	o.FirstContact = 300 * time.Millisecond
	o.Logger = zap.New(core)
	c := newClient(t, o)
	for i := 0; i < 2; i++ {
		_, err = c.Snapshot(ctxT(t))
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "no answer from IMDS at "+ep+" within 300ms") {
			t.Fatalf("err %v, want ErrUnreachable naming the endpoint and the bound", err)
		}
	}
	// One hung attempt per snapshot (the token PUT), not Attempts of them.
	if st := c.Stats(); st.Requests != 2 {
		t.Fatalf("stats %v: want one request per snapshot", st)
	}
	entries := logs.FilterMessage("no answer yet from IMDS at " + ep).All()
	if len(entries) != 1 {
		t.Fatalf("%d \"no answer yet\" lines, want exactly 1: %v", len(entries), logs.All())
	}
	if f := entries[0].ContextMap(); f["waiting_for"] != "mac" {
		t.Fatalf("log fields %v: want what it waits for", f)
	}
}

// Once IMDS has answered, the first-contact bound no longer applies: a
// hang is then a fault of a running IMDS, retried as usual.
func TestFirstContactOnlyUntilTheFirstAnswer(t *testing.T) {
	s := instance(0)
	o := fastOptions(startFake(t, s))
	o.RequestTimeout = 100 * time.Millisecond
	o.FirstContact = 50 * time.Millisecond
	c := newClient(t, o)
	mustSnapshot(t, c)
	s.SetFault("network/", fakeimds.Fault{Kind: fakeimds.FaultHang})
	before := c.Stats().Requests
	if _, err := c.Snapshot(ctxT(t)); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err %v", err)
	}
	if n := c.Stats().Requests - before; n != int64(o.Attempts) {
		t.Fatalf("%d requests, want %d attempts (no first-contact cut)", n, o.Attempts)
	}
}

// One token and one small pool of kept-alive connections serve a whole
// pass; a quiet refresh opens none.
func TestConnectionsReused(t *testing.T) {
	s := instance(14)
	c := newClient(t, fastOptions(startFake(t, s)))
	mustSnapshot(t, c)
	st := c.Stats()
	// A pool of Concurrency+1; net/http may dial a spare while a
	// connection is on its way back to the pool, so allow twice that.
	if limit := int64(2 * (DefaultConcurrency + 1)); st.Connections < 1 || st.Connections > limit || st.TokenFetches != 1 {
		t.Fatalf("cold snapshot of 15 ENIs: %v; want at most %d connections and one token", st, limit)
	}
	if int64(s.Connections()) != st.Connections {
		t.Fatalf("client counted %d connections, IMDS accepted %d", st.Connections, s.Connections())
	}
	mustSnapshot(t, c)
	if n := c.Stats().Connections; n != st.Connections {
		t.Fatalf("quiet refresh opened %d connections", n-st.Connections)
	}
}

// Concurrency 1 reads one ENI after another, as before.
func TestSequentialOption(t *testing.T) {
	s := instance(3)
	o := fastOptions(startFake(t, s))
	o.Concurrency = 1
	c := newClient(t, o)
	mustSnapshot(t, c)
	if n := c.Stats().Connections; n != 1 {
		t.Fatalf("%d connections with Concurrency 1, want 1", n)
	}
}
