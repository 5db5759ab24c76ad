package imds

import (
	"context"
	"testing"
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
