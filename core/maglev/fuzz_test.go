package maglev

import (
	"slices"
	"strings"
	"testing"
)

// FuzzBuild: any backend list (names are opaque strings) and any size give
// either an error (size not a prime above the backend count) or a full
// table, each slot naming one of the sorted, distinct backends, each
// backend within a few slots of its fair share, the same whatever the
// order of the list.
func FuzzBuild(f *testing.F) {
	f.Add("198.19.1.2:8080,198.19.2.2:8080", 7)
	f.Add("a,b,c,a", 251)
	f.Add("", 251)
	f.Add("x", 2)
	f.Add("a,b", 4)
	f.Add(strings.Repeat("b,", 50), 1021)
	f.Fuzz(func(t *testing.T, list string, size int) {
		if size > 70000 || size < -1 {
			t.Skip("tables braid builds are at most 65521")
		}
		backends := strings.Split(list, ",")
		if list == "" {
			backends = nil
		}
		table, sorted, err := Build(backends, size)
		if err != nil {
			if IsPrime(size) && len(backends) < size {
				t.Fatalf("Build(%d backends, %d): %v", len(backends), size, err)
			}
			return
		}
		if !IsPrime(size) {
			t.Fatalf("built a table of non-prime size %d", size)
		}
		want := slices.Clone(backends)
		slices.Sort(want)
		want = slices.Compact(want)
		if !slices.Equal(sorted, want) {
			t.Fatalf("sorted backends %q, want %q", sorted, want)
		}
		if len(sorted) == 0 {
			if table != nil {
				t.Errorf("a table for no backends: %v", table)
			}
			return
		}
		if len(table) != size {
			t.Fatalf("table of %d slots, want %d", len(table), size)
		}
		counts := make([]int, len(sorted))
		for _, b := range table {
			if b < 0 || b >= len(sorted) {
				t.Fatalf("slot names backend %d of %d", b, len(sorted))
			}
			counts[b]++
		}
		// Maglev fills slots round-robin: shares differ by at most one,
		// but for the last round's remainder.
		lo, hi := slices.Min(counts), slices.Max(counts)
		if hi-lo > 1 {
			t.Errorf("shares %d..%d for %d backends in %d slots", lo, hi, len(sorted), size)
		}
		rev := slices.Clone(backends)
		slices.Reverse(rev)
		if again, _, _ := Build(rev, size); !slices.Equal(again, table) {
			t.Error("the table depends on the order of the backends")
		}
	})
}
