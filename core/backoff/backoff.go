// Package backoff is braid's one retry delay: doubling from Min to Max
// while attempts fail or what they started dies young, from Min again once
// it ran for Stable. The agent's plugin supervisor and etcd's session loop
// use it.
package backoff

import "time"

// Backoff is the wait before the next attempt. The zero value is not
// useful: set Min, Max and Stable.
type Backoff struct {
	Min, Max, Stable time.Duration
	cur              time.Duration
}

// Next is the wait before the next attempt, after one whose result ran
// for ran (0 or little if it failed at once).
func (b *Backoff) Next(ran time.Duration) time.Duration {
	if b.cur == 0 || ran >= b.Stable {
		b.cur = b.Min
	}
	d := b.cur
	b.cur = min(2*b.cur, b.Max)
	return d
}
