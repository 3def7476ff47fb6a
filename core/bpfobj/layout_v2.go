//go:build braid_layout_v2

package bpfobj

import "github.com/cilium/ebpf"

// LayoutGrowth is the factor by which this build grows every map it
// adjusts (see adjustLayout).
const LayoutGrowth = 2

// adjustLayout makes this build a stand-in for a newer braid whose map
// layout changed, as a release that raises a map's capacity does: every
// pinned private map that keeps its entries across releases (not the
// per-CPU counters) holds LayoutGrowth times the entries. The pinned maps
// of the running build no longer fit the spec, so the first call of this
// build migrates them (migrate). Values keep their size: the Go side of
// this same source writes them. (A value that grows is migrated
// zero-extended: TestMigrateGrownValue.) integration/upgrade builds the
// plugins with this tag and installs them under running pods.
func adjustLayout(spec *ebpf.CollectionSpec) {
	for _, m := range spec.Maps {
		if m.Pinning != ebpf.PinByName || perCPU(m.Type) {
			continue
		}
		m.MaxEntries *= LayoutGrowth
	}
}
