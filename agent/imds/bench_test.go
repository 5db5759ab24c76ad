package imds

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/imds/fakeimds"
)

// BenchmarkQuietRefresh measures a refresh of an instance with 8 ENIs whose
// fixed keys are cached, over loopback; requests/op must stay 1+4×8.
func BenchmarkQuietRefresh(b *testing.B) {
	s := instance(7)
	ep, err := s.Start("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c, err := New(fastOptions(ep))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Snapshot(ctx); err != nil {
		b.Fatal(err)
	}
	before := c.Stats().Requests
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Snapshot(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(c.Stats().Requests-before)/float64(b.N), "requests/op")
}

// BenchmarkFirstSight measures a snapshot that reads every key of 8 ENIs
// (what the first refresh after start costs).
func BenchmarkFirstSight(b *testing.B) {
	s := instance(7)
	ep, err := s.Start("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c, err := New(fastOptions(ep))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	before := c.Stats().Requests
	for b.Loop() {
		if _, err := c.SnapshotFull(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(c.Stats().Requests-before)/float64(b.N), "requests/op")
}

// large is an instance of 15 ENIs × 100 IPv4 addresses (issue 14's cold
// apply), one subnet per ENI.
func large() *fakeimds.Server {
	s := fakeimds.New()
	for i := 0; i < 15; i++ {
		e := fakeimds.ENI{
			MAC: fmt.Sprintf("02:00:00:00:02:%02x", i), InterfaceID: fmt.Sprintf("eni-0c%016x", i), DeviceNumber: i,
			SubnetIPv4: fmt.Sprintf("100.64.%d.0/24", 10+i), VPCIPv4: []string{"100.64.0.0/16"},
		}
		for a := 0; a < 100; a++ {
			e.IPv4 = append(e.IPv4, fmt.Sprintf("100.64.%d.%d", 10+i, 10+a))
		}
		s.AttachENI(e)
	}
	s.SetPrimaryMAC("02:00:00:00:02:00")
	return s
}

// BenchmarkColdSnapshot15x100 measures a cold snapshot (new client: new
// token, new connections, nothing cached) of 15 ENIs × 100 addresses over
// loopback, reading the ENIs one after another and 4 at a time, with the
// fake answering at once and after 1 ms per request (a round trip to a
// loaded IMDS). It reports requests, TCP connections and the wall time.
func BenchmarkColdSnapshot15x100(b *testing.B) {
	for _, latency := range []time.Duration{0, time.Millisecond} {
		for _, conc := range []int{1, DefaultConcurrency} {
			name := fmt.Sprintf("latency=%v/concurrency=%d", latency, conc)
			b.Run(name, func(b *testing.B) {
				s := large()
				if latency > 0 {
					s.SetFault("", fakeimds.Fault{Kind: fakeimds.FaultSlow, Delay: latency})
				}
				ep, err := s.Start("127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				o := Options{Endpoint: ep, Concurrency: conc}
				var reqs, conns int64
				for b.Loop() {
					c, err := New(o)
					if err != nil {
						b.Fatal(err)
					}
					snap, err := c.Snapshot(context.Background())
					if err != nil || len(snap.ENIs) != 15 || snap.ENIs[14].State != Complete {
						b.Fatalf("snapshot: %v", err)
					}
					st := c.Stats()
					reqs, conns = reqs+st.Requests, conns+st.Connections
				}
				b.ReportMetric(float64(reqs)/float64(b.N), "requests/op")
				b.ReportMetric(float64(conns)/float64(b.N), "conns/op")
			})
		}
	}
}

// BenchmarkSettleAfterPropagation measures how long after IMDS completes
// a hot-attached ENI (its propagation window of 300 ms ends) Settle
// returns it Complete, at the default 150 ms poll interval, and the
// requests that cost. The anchor is amazon-ec2-net-utils' 100 ms poll.
func BenchmarkSettleAfterPropagation(b *testing.B) {
	s := instance(1)
	ep, err := s.Start("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c, err := New(Options{Endpoint: ep})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	const window = 300 * time.Millisecond
	var lag, worst time.Duration
	var reqs int64
	i := 0
	for b.Loop() {
		i++
		e := secondary(1 + i%50)
		e.DeviceNumber = 2 + i%50
		s.SetPropagation(window)
		s.AttachENI(e)
		complete := time.Now().Add(window)
		s.SetPropagation(0)
		before := c.Stats().Requests
		snap, err := c.Snapshot(ctx)
		if err != nil {
			b.Fatal(err)
		}
		snap = c.Settle(ctx, snap, nil, 10*time.Second)
		d := time.Since(complete)
		if st := snap.ENI(e.MAC); st == nil || st.State != Complete {
			b.Fatalf("not settled: %+v", st)
		}
		reqs += c.Stats().Requests - before
		lag += d
		worst = max(worst, d)
		s.DetachENI(e.MAC)
		c.Forget(e.MAC)
	}
	b.ReportMetric(float64(lag.Milliseconds())/float64(b.N), "ms-after-complete/op")
	b.ReportMetric(float64(worst.Milliseconds()), "ms-after-complete-max")
	b.ReportMetric(float64(reqs)/float64(b.N), "requests/op")
}
