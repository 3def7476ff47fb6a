package maps

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// CountersPin is the name of a plugin's counters map (bpf/include/counters.h)
// under <bpfRoot>/<plugin>/.
const CountersPin = "counters"

// Counters sums a plugin's per-CPU counters map, index by index: the one
// reader of counters (status, metrics, tests and benchmarks all use it). The
// names of the indexes are the plugin's enum counter (plugins/counters).
func Counters(m *ebpf.Map) ([]uint64, error) {
	out := make([]uint64, m.MaxEntries())
	var perCPU []uint64
	for i := range out {
		if err := m.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("counter %d: %w", i, err)
		}
		for _, v := range perCPU {
			out[i] += v
		}
	}
	return out, nil
}

// PinnedCounters is Counters of the map pinned at pin, opened read-only.
func PinnedCounters(pin string) ([]uint64, error) {
	m, err := ebpf.LoadPinnedMap(pin, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return Counters(m)
}
