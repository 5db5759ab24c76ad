package daemon

import (
	"time"

	"github.com/ec2net/ec2net/agent/imds"
)

// How often the pending ENIs that have a link are peeked at (one request
// each, for the key each waits on), by how long the youngest of them has
// been pending. EC2's propagation lag is typically seconds (imds.md §8)
// and the goal is to configure an ENI within 300 ms of its metadata
// completing for lags up to 60 s: the fast rate holds for 90 s. An ENI
// whose metadata never completes must not cost ~7 requests a second for
// the rest of the instance's life, so after that the rate falls to one a
// second, and after five minutes to one every 5 s (the refresh and link
// events still read it in full).
const (
	peekFastFor = 90 * time.Second
	peekSlowFor = 5 * time.Minute
	peekSlow    = time.Second
	peekSlowest = 5 * time.Second
)

// peekEvery is the interval for ENIs whose youngest has been pending for age.
func peekEvery(age time.Duration) time.Duration {
	switch {
	case age < peekFastFor:
		return imds.DefaultPollInterval
	case age < peekSlowFor:
		return peekSlow
	}
	return peekSlowest
}

// peekSchedule remembers since when each peekable ENI has been pending.
type peekSchedule struct{ since map[string]time.Time }

func newPeekSchedule() *peekSchedule { return &peekSchedule{since: map[string]time.Time{}} }

// next returns when to peek again at the ENIs pending now (false: none
// is); an ENI no longer among them starts afresh if it is pending again.
func (s *peekSchedule) next(peekable []string, now time.Time) (time.Duration, bool) {
	pending := make(map[string]bool, len(peekable))
	youngest := time.Duration(-1)
	for _, mac := range peekable {
		pending[mac] = true
		since, ok := s.since[mac]
		if !ok {
			since = now
			s.since[mac] = now
		}
		if age := now.Sub(since); youngest < 0 || age < youngest {
			youngest = age
		}
	}
	for mac := range s.since {
		if !pending[mac] {
			delete(s.since, mac)
		}
	}
	if youngest < 0 {
		return 0, false
	}
	return peekEvery(youngest), true
}
