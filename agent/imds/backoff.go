package imds

import (
	"math/rand/v2"
	"sync"
	"time"
)

// BackoffConfig is a capped exponential backoff with jitter. Zero fields
// take the defaults (100 ms, 5 s, 0.2).
type BackoffConfig struct {
	Initial time.Duration // first delay
	Max     time.Duration // no delay is longer
	Jitter  float64       // 0..1: each delay is shortened by up to this fraction
}

func (c BackoffConfig) withDefaults() BackoffConfig {
	if c.Initial <= 0 {
		c.Initial = 100 * time.Millisecond
	}
	if c.Max <= 0 {
		c.Max = 5 * time.Second
	}
	if c.Max < c.Initial {
		c.Max = c.Initial
	}
	if c.Jitter <= 0 {
		c.Jitter = 0.2
	}
	if c.Jitter > 1 {
		c.Jitter = 1
	}
	return c
}

// Backoff hands out successive delays: Initial, doubling up to Max, each
// shortened by a random fraction up to Jitter. Shortening (rather than
// jittering both ways) keeps every delay within Max while still spreading
// the retries of many instances that lost IMDS at the same moment.
// Safe for concurrent use.
type Backoff struct {
	mu   sync.Mutex
	cfg  BackoffConfig
	next time.Duration
}

// NewBackoff returns a Backoff for c (zero fields defaulted).
func NewBackoff(c BackoffConfig) *Backoff {
	c = c.withDefaults()
	return &Backoff{cfg: c, next: c.Initial}
}

// Next returns the next delay and advances the sequence.
func (b *Backoff) Next() time.Duration {
	b.mu.Lock()
	base := b.next
	if b.next < b.cfg.Max {
		b.next *= 2
		if b.next > b.cfg.Max {
			b.next = b.cfg.Max
		}
	}
	b.mu.Unlock()
	d := base - time.Duration(float64(base)*b.cfg.Jitter*rand.Float64())
	if d <= 0 {
		d = 1
	}
	return d
}

// Reset starts the sequence again at Initial.
func (b *Backoff) Reset() {
	b.mu.Lock()
	b.next = b.cfg.Initial
	b.mu.Unlock()
}
