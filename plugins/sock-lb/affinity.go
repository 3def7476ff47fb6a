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
	stale, err := d.staleAffinity(timeout, now)
	if err != nil {
		return err
	}
	return deleteAll(d.objs.LbAffinity, stale)
}

// sweepBatch is how many entries one batch syscall reads: a full map
// (65,536) in 16 calls rather than two syscalls an entry (about 1 s).
const sweepBatch = 4096

// staleAffinity reads the whole map in batches and returns the keys that
// are of no use at now.
func (d *datapath) staleAffinity(timeout map[uint32]uint64, now uint64) ([]sockLbLbAffinityKey, error) {
	keys := make([]sockLbLbAffinityKey, sweepBatch)
	vals := make([]sockLbLbAffinityValue, sweepBatch)
	var stale []sockLbLbAffinityKey
	var cursor ebpf.MapBatchCursor
	for {
		n, err := d.objs.LbAffinity.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			if t, ok := timeout[keys[i].Id]; !ok || expired(now, vals[i].LastNs, t) {
				stale = append(stale, keys[i])
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return stale, nil // the end
		}
		if err != nil {
			return nil, fmt.Errorf("affinity map: %w", err)
		}
	}
}

// deleteAll deletes keys in batches; a key already gone (evicted, or
// replaced by a connect since) is skipped.
func deleteAll(m *ebpf.Map, keys []sockLbLbAffinityKey) error {
	for len(keys) > 0 {
		n, err := m.BatchDelete(keys, nil)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ebpf.ErrKeyNotExist):
			keys = keys[n+1:] // the kernel stops at the missing key
		default:
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
