package maglev

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func backends(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("198.19.%d.%d:8080", i/200+1, i%200+2)
	}
	return out
}

// Each backend gets close to M/N entries.
func TestUniform(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 50} {
		table, sorted, err := Build(backends(n), DefaultSize)
		if err != nil {
			t.Fatal(err)
		}
		counts := make([]int, len(sorted))
		for _, b := range table {
			counts[b]++
		}
		ideal := float64(DefaultSize) / float64(n)
		for i, c := range counts {
			if dev := (float64(c) - ideal) / ideal; dev > 0.05 || dev < -0.05 {
				t.Errorf("%d backends: backend %d has %d entries, ideal %.0f (%.1f%% off)", n, i, c, ideal, dev*100)
			}
		}
	}
}

// The table depends on the backend set, not the order it was given in.
func TestOrderIndependent(t *testing.T) {
	bs := backends(10)
	a, sa, _ := Build(bs, 1021)
	shuffled := append([]string(nil), bs...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	b, sb, _ := Build(shuffled, 1021)
	for i := range a {
		if sa[a[i]] != sb[b[i]] {
			t.Fatalf("entry %d differs: %s vs %s", i, sa[a[i]], sb[b[i]])
		}
	}
}

// Removing one of N backends moves little more than its own 1/N share.
func TestMinimalDisruption(t *testing.T) {
	const n = 10
	bs := backends(n)
	before, sb, _ := Build(bs, DefaultSize)
	gone := bs[3]
	after, sa, _ := Build(append(append([]string(nil), bs[:3]...), bs[4:]...), DefaultSize)
	moved := 0
	for i := range before {
		if sb[before[i]] != gone && sb[before[i]] != sa[after[i]] {
			moved++
		}
	}
	// Entries of the removed backend must move; others should mostly stay.
	if frac := float64(moved) / DefaultSize; frac > 0.05 {
		t.Errorf("%.1f%% of entries not owned by the removed backend moved; want under 5%%", frac*100)
	}
}

func TestBadSizes(t *testing.T) {
	if _, _, err := Build(backends(3), 1000); err == nil {
		t.Error("a non-prime size was accepted")
	}
	if _, _, err := Build(backends(5), 5); err == nil {
		t.Error("a size not above the backend count was accepted")
	}
	if table, _, err := Build(nil, 7); err != nil || table != nil {
		t.Errorf("no backends: table %v, err %v; want nil, nil", table, err)
	}
}
