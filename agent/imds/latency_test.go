package imds

import (
	"sync"
	"testing"
	"time"
)

// Every request reports its latency once, token PUT included.
func TestLatencyObserverSeesEveryRequest(t *testing.T) {
	s := instance(1)
	c := newClient(t, fastOptions(startFake(t, s)))
	var mu sync.Mutex
	var seen []time.Duration
	c.SetLatencyObserver(func(d time.Duration) {
		mu.Lock()
		seen = append(seen, d)
		mu.Unlock()
	})
	mustSnapshot(t, c)
	mu.Lock()
	n := len(seen)
	mu.Unlock()
	if st := c.Stats(); int64(n) != st.Requests || n == 0 {
		t.Fatalf("%d latencies observed for %d requests", n, st.Requests)
	}
	for _, d := range seen {
		if d <= 0 {
			t.Fatalf("latency %v", d)
		}
	}
	c.SetLatencyObserver(nil)
	c.Forget(secondaryMAC(1))
	mustSnapshot(t, c)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != n {
		t.Errorf("observer removed but still called")
	}
}
