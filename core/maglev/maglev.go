// Package maglev builds Maglev consistent-hashing lookup tables (Eisenbud et
// al., NSDI 2016). Every node builds the same table from the same backend
// set, whatever order it learned the backends in, so a flow maps to the same
// backend whichever node it enters through; and when one backend goes, only
// about 1/N of the table moves.
package maglev

import (
	"fmt"
	"hash/fnv"
	"slices"
)

// DefaultSize is the table size braid uses unless configured: a prime well
// above any backend count it supports, so each backend gets ~M/N slots.
const DefaultSize = 16381

// Build returns a table of size entries, each an index into backends. The
// backends are sorted first, so the caller's order does not matter, and
// indices refer to the sorted order, which Build also returns. size must be
// a prime larger than len(backends).
func Build(backends []string, size int) (table []int, sorted []string, err error) {
	if !IsPrime(size) {
		return nil, nil, fmt.Errorf("maglev table size %d is not prime", size)
	}
	if len(backends) >= size {
		return nil, nil, fmt.Errorf("maglev table size %d is too small for %d backends", size, len(backends))
	}
	sorted = slices.Clone(backends)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	if len(sorted) == 0 {
		return nil, sorted, nil
	}
	offset, skip := make([]int, len(sorted)), make([]int, len(sorted))
	for i, b := range sorted {
		offset[i] = int(hash(b, "offset") % uint64(size))
		skip[i] = int(hash(b, "skip")%uint64(size-1)) + 1
	}
	table = make([]int, size)
	for i := range table {
		table[i] = -1
	}
	next := make([]int, len(sorted))
	for filled := 0; ; {
		for i := range sorted {
			c := (offset[i] + next[i]*skip[i]) % size
			for table[c] >= 0 {
				next[i]++
				c = (offset[i] + next[i]*skip[i]) % size
			}
			table[c] = i
			next[i]++
			if filled++; filled == size {
				return table, sorted, nil
			}
		}
	}
}

func hash(s, salt string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(salt))
	h.Write([]byte{0})
	h.Write([]byte(s))
	return h.Sum64()
}

// IsPrime reports whether n is prime.
func IsPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}
