package bpfobj

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// Migration is what migrate did to one pinned map.
type Migration struct {
	Map     string
	Entries int
	Wiped   bool // the layouts could not be reconciled; the map starts empty
}

// migrate makes every pinned map under dir fit the spec before a load: a
// newer build whose map layout changed (a field appended to a value, more
// entries) must not fail, nor lose what the old build's map held. Entries
// are copied into a new map of the new layout, values zero-extended or cut;
// the new map then replaces the old pin. Programs still attached with the
// old map keep it until they are replaced (the next ADD or braid sync).
func migrate(spec *ebpf.CollectionSpec, dir string) ([]Migration, error) {
	var done []Migration
	for name, ms := range spec.Maps {
		if ms.Pinning != ebpf.PinByName {
			continue
		}
		pin := filepath.Join(dir, name)
		old, err := ebpf.LoadPinnedMap(pin, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return done, fmt.Errorf("pinned map %s: %w", pin, err)
		}
		if ms.Compatible(old) == nil {
			old.Close()
			continue
		}
		m, err := migrateMap(old, ms, pin)
		old.Close()
		if err != nil {
			return done, fmt.Errorf("migrate map %s: %w", pin, err)
		}
		done = append(done, m)
	}
	return done, nil
}

func migrateMap(old *ebpf.Map, spec *ebpf.MapSpec, pin string) (Migration, error) {
	res := Migration{Map: spec.Name}
	fresh := spec.Copy()
	fresh.Pinning = ebpf.PinNone
	m, err := ebpf.NewMap(fresh)
	if err != nil {
		return res, err
	}
	defer m.Close()
	if copyable(old, spec) {
		if res.Entries, err = copyEntries(old, m, spec); err != nil {
			return res, err
		}
	} else {
		res.Wiped = true
	}
	// Pinned beside the old map, then renamed over it: a process killed
	// here leaves the old map or the new one pinned, never none (which
	// would start the map afresh, losing what the store cannot rebuild).
	tmp := pin + "~" // bpffs allows no dot in a name
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, err // left by a migration killed before its rename
	}
	if err := m.Pin(tmp); err != nil {
		return res, err
	}
	if err := os.Rename(tmp, pin); err != nil {
		_ = os.Remove(tmp)
		return res, err
	}
	return res, nil
}

// copyable: same kind of map and key; the value may grow or shrink. Per-CPU
// maps (counters) start afresh: their values are per-boot statistics.
func copyable(old *ebpf.Map, spec *ebpf.MapSpec) bool {
	return old.Type() == spec.Type && old.KeySize() == spec.KeySize &&
		!perCPU(old.Type()) && !ofMaps(old.Type())
}

// ofMaps: a map of maps reads back inner map ids but is written with file
// descriptors, so its values cannot be copied; its owner rebuilds it.
func ofMaps(t ebpf.MapType) bool { return t == ebpf.ArrayOfMaps || t == ebpf.HashOfMaps }

func copyEntries(old, m *ebpf.Map, spec *ebpf.MapSpec) (int, error) {
	key := make([]byte, old.KeySize())
	val := make([]byte, old.ValueSize())
	out := make([]byte, spec.ValueSize)
	n := 0
	it := old.Iterate()
	for it.Next(&key, &val) {
		clear(out)
		copy(out, val)
		if err := m.Put(key, out); err != nil {
			return n, fmt.Errorf("entry %d: %w (the new map holds %d)", n, err, spec.MaxEntries)
		}
		n++
	}
	return n, it.Err()
}

func perCPU(t ebpf.MapType) bool {
	return t == ebpf.PerCPUHash || t == ebpf.PerCPUArray || t == ebpf.LRUCPUHash
}
