package main

import (
	"errors"
	"fmt"

	"github.com/braid-cni/braid/core/store"
	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// sweepAffinity deletes the lb_affinity entries no connect can use any more:
// their service is gone (ids are never reused) or has no affinity now, or
// their timeout has run out. The programs check the time at use and the map
// is an LRU, so this is not needed for correctness: it gives each entry a
// lifetime of its timeout (plus the time to the next sync) instead of
// leaving it until eviction.
func (d *datapath) sweepAffinity(services []store.Service) error {
	timeout := map[uint32]uint64{}
	for _, s := range services {
		if s.AffinityTimeout > 0 {
			timeout[s.ID] = uint64(s.AffinityTimeout) * 1e9
		}
	}
	now, err := monotonicNS()
	if err != nil {
		return err
	}
	var (
		k     sockLbLbAffinityKey
		v     sockLbLbAffinityValue
		stale []sockLbLbAffinityKey
	)
	it := d.objs.LbAffinity.Iterate()
	for it.Next(&k, &v) {
		if t, ok := timeout[k.Id]; !ok || expired(now, v.LastNs, t) {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("affinity map: %w", err)
	}
	for _, k := range stale {
		if err := d.objs.LbAffinity.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("affinity map: %w", err)
		}
	}
	return nil
}

// expired is the programs' test: more than timeout ns since last.
func expired(now, last, timeout uint64) bool { return now-last > timeout }

// monotonicNS is bpf_ktime_get_ns's clock.
func monotonicNS() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, err
	}
	return uint64(ts.Nano()), nil
}
