package daemon

import (
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/imds"
)

// A pending ENI is peeked at every 150 ms through lags up to 60 s (and
// beyond, to 90 s), then slower, so that one whose metadata never
// completes costs little; a newly pending ENI is fast again, and an ENI
// pending anew starts afresh.
func TestPeekScheduleSlowsDownOnlyForLongPendingENIs(t *testing.T) {
	s := newPeekSchedule()
	t0 := time.Unix(1_000_000, 0)
	a, b := "02:ec:20:00:01:01", "02:ec:20:00:01:02"
	expect := func(at time.Duration, peekable []string, want time.Duration) {
		t.Helper()
		got, ok := s.next(peekable, t0.Add(at))
		if want == 0 {
			if ok {
				t.Errorf("at %v with %v pending: peek in %v, want none", at, peekable, got)
			}
			return
		}
		if !ok || got != want {
			t.Errorf("at %v with %v pending: peek in %v (%v), want %v", at, peekable, got, ok, want)
		}
	}
	expect(0, []string{a}, imds.DefaultPollInterval)
	expect(60*time.Second, []string{a}, imds.DefaultPollInterval)
	expect(89*time.Second, []string{a}, imds.DefaultPollInterval)
	expect(91*time.Second, []string{a}, time.Second)
	expect(6*time.Minute, []string{a}, 5*time.Second)
	expect(6*time.Minute, []string{a, b}, imds.DefaultPollInterval) // b is new
	expect(6*time.Minute+time.Second, []string{b}, imds.DefaultPollInterval)
	expect(7*time.Minute, []string{a, b}, imds.DefaultPollInterval) // a pending again: afresh
	expect(9*time.Minute, []string{a, b}, time.Second)
	expect(10*time.Minute, nil, 0)
}

// What an ENI that never completes costs over an hour: the fast phase's
// 600 peeks, then a few hundred.
func TestPeekCostOfANeverCompletingENI(t *testing.T) {
	s := newPeekSchedule()
	now := time.Unix(1_000_000, 0)
	end := now.Add(time.Hour)
	peeks := 0
	for now.Before(end) {
		d, ok := s.next([]string{"02:ec:20:00:01:01"}, now)
		if !ok {
			t.Fatal("no peek scheduled for a pending ENI")
		}
		now = now.Add(d)
		peeks++
	}
	if peeks > 600+210+660+5 {
		t.Errorf("%d peeks in an hour", peeks)
	}
	if peeks < 600 {
		t.Errorf("only %d peeks: the fast phase was cut short", peeks)
	}
}
