package bpfobj

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/braid-cni/braid/internal/testenv"
	"github.com/cilium/ebpf"
)

// A newer build whose map value grew keeps the old entries, zero-extended,
// under the same pin; an unchanged map is left alone.
func TestMigrateGrownValue(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.BPFFS(t)
	oldSpec := &ebpf.MapSpec{Name: "tunnel_map", Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 16, Pinning: ebpf.PinByName}
	same := &ebpf.MapSpec{Name: "same", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 2, Pinning: ebpf.PinByName}
	for _, s := range []*ebpf.MapSpec{oldSpec, same} {
		m, err := ebpf.NewMapWithOptions(s, ebpf.MapOptions{PinPath: dir})
		if err != nil {
			t.Fatal(err)
		}
		for k := uint32(0); k < 2; k++ {
			if err := m.Put(k, k+100); err != nil {
				t.Fatal(err)
			}
		}
		m.Close()
	}

	newSpec := oldSpec.Copy()
	newSpec.ValueSize = 8
	done, err := migrate(&ebpf.CollectionSpec{Maps: map[string]*ebpf.MapSpec{"tunnel_map": newSpec, "same": same}}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 1 || done[0].Map != "tunnel_map" || done[0].Entries != 2 || done[0].Wiped {
		t.Fatalf("migrations %+v, want tunnel_map with 2 entries kept", done)
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, "tunnel_map"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.ValueSize() != 8 {
		t.Fatalf("pinned map value size %d, want 8", m.ValueSize())
	}
	for k := uint32(0); k < 2; k++ {
		var v [8]byte
		if err := m.Lookup(k, &v); err != nil {
			t.Fatalf("key %d lost: %v", k, err)
		}
		if got := binary.NativeEndian.Uint32(v[:4]); got != k+100 || binary.NativeEndian.Uint32(v[4:]) != 0 {
			t.Errorf("key %d: value % x, want %d then zeros", k, v, k+100)
		}
	}
}

// A changed key cannot be carried over: the map is replaced, empty.
func TestMigrateChangedKeyWipes(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.BPFFS(t)
	old := &ebpf.MapSpec{Name: "m", Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 4, Pinning: ebpf.PinByName}
	m, err := ebpf.NewMapWithOptions(old, ebpf.MapOptions{PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	_ = m.Put(uint32(1), uint32(1))
	m.Close()
	changed := old.Copy()
	changed.KeySize = 8
	done, err := migrate(&ebpf.CollectionSpec{Maps: map[string]*ebpf.MapSpec{"m": changed}}, dir)
	if err != nil || len(done) != 1 || !done[0].Wiped {
		t.Fatalf("migrations %+v, err %v; want m wiped", done, err)
	}
}

// The migrated map replaces the old pin in one rename: nothing else is
// left in the folder, and a temporary pin from a migration killed before
// its rename is cleared by the next one.
func TestMigrateReplacesPinAtomically(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.BPFFS(t)
	old := &ebpf.MapSpec{Name: "m", Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 4, Pinning: ebpf.PinByName}
	m, err := ebpf.NewMapWithOptions(old, ebpf.MapOptions{PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Put(uint32(1), uint32(7)); err != nil {
		t.Fatal(err)
	}
	m.Close()
	stale, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := stale.Pin(filepath.Join(dir, "m~")); err != nil {
		t.Fatal(err)
	}
	stale.Close()

	grown := old.Copy()
	grown.MaxEntries = 8
	if done, err := migrate(&ebpf.CollectionSpec{Maps: map[string]*ebpf.MapSpec{"m": grown}}, dir); err != nil || len(done) != 1 || done[0].Entries != 1 {
		t.Fatalf("migrations %+v, err %v", done, err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".debug") {
			names = append(names, e.Name())
		}
	}
	if len(names) != 1 || names[0] != "m" {
		t.Errorf("pins after migration: %v, want only m", names)
	}
	m, err = ebpf.LoadPinnedMap(filepath.Join(dir, "m"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var v uint32
	if m.MaxEntries() != 8 || m.Lookup(uint32(1), &v) != nil || v != 7 {
		t.Errorf("pinned map: %d entries max, key 1 = %d", m.MaxEntries(), v)
	}
}

// A map of maps reads back inner map ids, not descriptors: a grown one is
// replaced empty (its owner rebuilds the inner maps), never copied.
func TestMigrateMapOfMapsWipes(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.BPFFS(t)
	inner := &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 2}
	old := &ebpf.MapSpec{Name: "m", Type: ebpf.HashOfMaps, KeySize: 4, ValueSize: 4, MaxEntries: 4,
		Pinning: ebpf.PinByName, InnerMap: inner}
	m, err := ebpf.NewMapWithOptions(old, ebpf.MapOptions{PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	in, err := ebpf.NewMap(inner)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Put(uint32(1), in); err != nil {
		t.Fatal(err)
	}
	in.Close()
	m.Close()
	grown := old.Copy()
	grown.MaxEntries = 8
	done, err := migrate(&ebpf.CollectionSpec{Maps: map[string]*ebpf.MapSpec{"m": grown}}, dir)
	if err != nil || len(done) != 1 || !done[0].Wiped {
		t.Fatalf("migrations %+v, err %v; want m wiped", done, err)
	}
}
