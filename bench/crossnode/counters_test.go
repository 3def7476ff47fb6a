package main

import (
	"slices"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
)

// The datapath check reads counters by index: the names here must be the
// plugins' own, in their order.
func TestCounterNamesMatchPlugins(t *testing.T) {
	for _, cs := range []counterSet{vxlanCounters, nativeCounters} {
		if want := harness.CounterNames(t, cs.plugin); !slices.Equal(cs.names, want) {
			t.Errorf("%s counters: bench has %v, plugins/%s/counters.go %v", cs.plugin, cs.names, cs.plugin, want)
		}
	}
}
