package kit

import "github.com/cilium/ebpf"

// ReadCounters sums a braid plugin's per-CPU counters map pinned at pin
// (bpf/include/counters.h), indices 0..n-1.
func ReadCounters(pin string, n int) ([]uint64, error) {
	m, err := ebpf.LoadPinnedMap(pin, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	out := make([]uint64, n)
	for i := range out {
		var perCPU []uint64
		if err := m.Lookup(uint32(i), &perCPU); err != nil {
			return nil, err
		}
		for _, v := range perCPU {
			out[i] += v
		}
	}
	return out, nil
}
