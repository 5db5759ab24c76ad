package imds

import "time"

// SetLatencyObserver makes every HTTP request to IMDS (token PUTs
// included) report the time from sending it to its response headers, or
// to its failure. f runs on the requesting goroutine and must be quick
// (a histogram's Observe). nil stops the reports.
func (c *Client) SetLatencyObserver(f func(time.Duration)) {
	if f == nil {
		c.stats.latency.Store(nil)
		return
	}
	c.stats.latency.Store(&f)
}

func (s *counters) observe(d time.Duration) {
	if f := s.latency.Load(); f != nil {
		(*f)(d)
	}
}
