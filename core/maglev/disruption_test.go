package maglev

import (
	"slices"
	"testing"
)

// moved counts the entries whose backend changed between two tables, not
// counting those of backends that left.
func moved(before []int, sb []string, after []int, sa []string) (moved int) {
	for i := range before {
		if old := sb[before[i]]; slices.Contains(sa, old) && old != sa[after[i]] {
			moved++
		}
	}
	return moved
}

// Whichever backend goes, the others keep nearly all their entries, and the
// departed one's entries spread over the rest rather than landing on one.
func TestRemovalEveryBackend(t *testing.T) {
	for _, size := range []int{251, 1021, DefaultSize} {
		const n = 8
		bs := backends(n)
		before, sb, err := Build(bs, size)
		if err != nil {
			t.Fatal(err)
		}
		for gone := range n {
			rest := slices.Delete(slices.Clone(bs), gone, gone+1)
			after, sa, err := Build(rest, size)
			if err != nil {
				t.Fatal(err)
			}
			if frac := float64(moved(before, sb, after, sa)) / float64(size); frac > 0.08 {
				t.Errorf("size %d, backend %d gone: %.1f%% of the others' entries moved", size, gone, frac*100)
			}
			heirs := map[string]int{}
			for i := range before {
				if sb[before[i]] == bs[gone] {
					heirs[sa[after[i]]]++
				}
			}
			if len(heirs) < n/2 {
				t.Errorf("size %d, backend %d gone: its entries went to only %d of %d backends", size, gone, len(heirs), n-1)
			}
		}
	}
}

// A backend that joins takes about its 1/(N+1) share, from everyone.
func TestAddOneBackend(t *testing.T) {
	const n = 9
	bs := backends(n + 1)
	before, sb, _ := Build(bs[:n], DefaultSize)
	after, sa, _ := Build(bs, DefaultSize)
	changed, taken := 0, 0
	for i := range before {
		if sb[before[i]] != sa[after[i]] {
			changed++
			if sa[after[i]] == bs[n] {
				taken++
			}
		}
	}
	share := float64(DefaultSize) / (n + 1)
	if float64(taken) < 0.95*share || float64(taken) > 1.05*share {
		t.Errorf("the new backend took %d entries, want about %.0f", taken, share)
	}
	// Entries that changed but not to the newcomer are the churn Maglev
	// allows; keep it small.
	if churn := float64(changed-taken) / DefaultSize; churn > 0.05 {
		t.Errorf("%.1f%% of entries moved between old backends", churn*100)
	}
}
