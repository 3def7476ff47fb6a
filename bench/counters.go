package main

import (
	"github.com/cilium/ebpf"
)

// veth-ebpf's counter indices (bpf/veth_ebpf.c).
const (
	cntRedirectPeer = 0
	cntPassNext     = 1
)

// readCounters sums veth-ebpf's per-CPU counters pinned at pin, indices
// 0..n-1.
func readCounters(pin string, n int) ([]uint64, error) {
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

// counted runs fn and adds the braid datapath's redirect_peer and
// pass-to-stack counter deltas over it to d (nothing for other datapaths).
func (d *datapath) counted(fn func() error) error {
	if d.counters == "" {
		return fn()
	}
	before, err := readCounters(d.counters, 2)
	if err != nil {
		return err
	}
	if err := fn(); err != nil {
		return err
	}
	after, err := readCounters(d.counters, 2)
	if err != nil {
		return err
	}
	d.redirect += after[cntRedirectPeer] - before[cntRedirectPeer]
	d.passed += after[cntPassNext] - before[cntPassNext]
	return nil
}
