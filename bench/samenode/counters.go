package main

import (
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/plugins/counters"
)

// veth-ebpf's counter indices (bpf/veth_ebpf.c).
const (
	cntRedirectPeer = int(counters.VethEbpfCounterCNT_REDIRECT_PEER)
	cntPassNext     = int(counters.VethEbpfCounterCNT_PASS_NEXT)
)

// counted runs fn and adds the braid datapath's redirect_peer and
// pass-to-stack counter deltas over it to d (nothing for other datapaths).
func (d *datapath) counted(fn func() error) error {
	if d.counters == "" {
		return fn()
	}
	before, err := maps.PinnedCounters(d.counters)
	if err != nil {
		return err
	}
	if err := fn(); err != nil {
		return err
	}
	after, err := maps.PinnedCounters(d.counters)
	if err != nil {
		return err
	}
	d.redirect += after[cntRedirectPeer] - before[cntRedirectPeer]
	d.passed += after[cntPassNext] - before[cntPassNext]
	return nil
}
