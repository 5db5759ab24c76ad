package main

import (
	"bufio"
	"strings"
	"testing"
)

func TestParseKeepsSubBenchmarksAndNotesFailures(t *testing.T) {
	in := `BenchmarkBoot/log=info-2   	       1	      1500 addresses	       252.8 apply-to-ready-ms
BenchmarkMove-2   	       1	        41.53 after-complete-p50-ms
--- FAIL: BenchmarkIPBatch
    bench_test.go:130: ip -batch: exit status 1
FAIL	github.com/ec2net/ec2net/netconf	1.259s
BenchmarkColdSnapshot15x100/latency=0s/concurrency=4-2   	      51	  33960847 ns/op	         4.333 conns/op
`
	var echoed int
	r, failed := parse(bufio.NewScanner(strings.NewReader(in)), func(string) { echoed++ })
	if echoed != 6 {
		t.Errorf("echoed %d lines, want 6", echoed)
	}
	if v, ok := r.get("Boot/log=info", "apply-to-ready-ms"); !ok || v != 252.8 {
		t.Errorf("Boot/log=info: %v %v (%v)", v, ok, r)
	}
	if v := r.v("Move", "after-complete-p50-ms"); v != 41.53 {
		t.Errorf("Move: %v", v)
	}
	if v := r.v("ColdSnapshot15x100/latency=0s/concurrency=4", "conns/op"); v != 4.333 {
		t.Errorf("sub-benchmark: %v (%v)", v, r)
	}
	if len(failed) != 2 || failed[0] != "BenchmarkIPBatch" {
		t.Errorf("failed %q", failed)
	}
}

func TestGoalRemembersWhatWasMissed(t *testing.T) {
	rp := &report{}
	if rp.goal("a", true) != "met" || rp.goal("b", false) != "MISSED" {
		t.Fatal("goal words")
	}
	if len(rp.missed) != 1 || rp.missed[0] != "b" {
		t.Errorf("missed %q", rp.missed)
	}
}
