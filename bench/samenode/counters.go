package main

import "github.com/braid-cni/braid/bench/internal/kit"

// veth-ebpf's counter indices (bpf/veth_ebpf.c).
const (
	cntRedirectPeer = 0
	cntPassNext     = 1
)

// counted runs fn and adds the braid datapath's redirect_peer and
// pass-to-stack counter deltas over it to d (nothing for other datapaths).
func (d *datapath) counted(fn func() error) error {
	if d.counters == "" {
		return fn()
	}
	before, err := kit.ReadCounters(d.counters, 2)
	if err != nil {
		return err
	}
	if err := fn(); err != nil {
		return err
	}
	after, err := kit.ReadCounters(d.counters, 2)
	if err != nil {
		return err
	}
	d.redirect += after[cntRedirectPeer] - before[cntRedirectPeer]
	d.passed += after[cntPassNext] - before[cntPassNext]
	return nil
}
