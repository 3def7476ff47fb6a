package backoff

import (
	"testing"
	"time"
)

func TestDoublesAndResets(t *testing.T) {
	b := Backoff{Min: 250 * time.Millisecond, Max: 30 * time.Second, Stable: time.Minute}
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
		4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		if got := b.Next(time.Second); got != w {
			t.Fatalf("wait %d after attempts that ran 1s: %v, want %v", i, got, w)
		}
	}
	if got := b.Next(time.Minute); got != b.Min {
		t.Errorf("after one that ran %v: %v, want %v", b.Stable, got, b.Min)
	}
	if got := b.Next(0); got != 2*b.Min {
		t.Errorf("then after a failed one: %v, want %v", got, 2*b.Min)
	}
}
