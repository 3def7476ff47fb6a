package main

// Maglev tables: one array map per NodePort service, the inner maps of
// dsr_maglev (service id -> table).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/braid-cni/braid/core/maglev"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/store"
	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// slotSize is one backend in a table's memory: struct addr_port.
const slotSize = 8

// tableSpec is one Maglev table: as the template of dsr_maglev in
// bpf/dsr.c but for its size (BPF_F_INNER_MAP allows each its own).
func tableSpec(size int) *ebpf.MapSpec {
	return &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: slotSize,
		MaxEntries: uint32(size), Flags: unix.BPF_F_INNER_MAP | unix.BPF_F_MMAPABLE}
}

// table is the service's Maglev table as its map's memory holds it, slot
// after slot; nil when the service has no backend here (it then has no
// table).
func (d *datapath) table(np nodePort) ([]byte, error) {
	names := make([]string, len(np.backends))
	byName := map[string]store.Backend{}
	for i, b := range np.backends {
		names[i] = b.String()
		byName[names[i]] = b
	}
	table, sorted, err := maglev.Build(names, d.conf.MaglevTableSize)
	if err != nil || len(table) == 0 {
		return nil, err
	}
	out := make([]byte, 0, len(table)*slotSize)
	for _, idx := range table {
		b := byName[sorted[idx]]
		out = binary.NativeEndian.AppendUint32(out, maps.IPv4Word(b.IP))
		out = binary.NativeEndian.AppendUint16(out, maps.Port16(b.Port))
		out = binary.NativeEndian.AppendUint16(out, 0)
	}
	return out, nil
}

// buildTable is a new map holding the service's table, or nil when
// dsr_maglev holds that table already (or the service needs none).
func (d *datapath) buildTable(np nodePort) (*ebpf.Map, error) {
	want, err := d.table(np)
	if err != nil {
		return nil, fmt.Errorf("service %s: %w", np.svc.Name, err)
	}
	if want == nil {
		return nil, nil
	}
	if have, err := d.readTable(np.svc.ID); err == nil && bytes.Equal(have, want) {
		return nil, nil
	}
	t, err := ebpf.NewMap(tableSpec(len(want) / slotSize))
	if err != nil {
		return nil, fmt.Errorf("service %s: maglev table: %w", np.svc.Name, err)
	}
	if err := withMemory(t, unix.PROT_WRITE, func(mem []byte) { copy(mem, want) }); err != nil {
		t.Close()
		return nil, fmt.Errorf("service %s: maglev table: %w", np.svc.Name, err)
	}
	return t, nil
}

// readTable is a copy of the table dsr_maglev holds for service id.
func (d *datapath) readTable(id uint32) ([]byte, error) {
	var t *ebpf.Map
	if err := d.objs.DsrMaglev.Lookup(id, &t); err != nil {
		return nil, err
	}
	defer t.Close()
	var out []byte
	err := withMemory(t, unix.PROT_READ, func(mem []byte) { out = bytes.Clone(mem) })
	return out, err
}

// withMemory runs fn on a table's slots, mapped into memory: one copy
// instead of a syscall per slot (or a batch that is as slow).
func withMemory(t *ebpf.Map, prot int, fn func(mem []byte)) error {
	size := int(t.MaxEntries()) * slotSize
	page := os.Getpagesize()
	mem, err := unix.Mmap(t.FD(), 0, (size+page-1)/page*page, prot, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	fn(mem[:size])
	return unix.Munmap(mem)
}

// swapBatch is how many tables one update of dsr_maglev swaps in: each
// update of a map of maps waits for the programs running to finish (an RCU
// grace period, about 10 ms here), so one per table would make a sync of
// thousands take a minute; and the batch bounds the new tables held at once.
const swapBatch = 256

// tableSwap collects built tables and puts them into dsr_maglev, each
// replacing its service's table in one step: a packet in flight sees the
// old table or the new one, never a mix. An old table goes when the last
// program using it is done.
type tableSwap struct {
	outer  *ebpf.Map
	ids    []uint32
	tables []*ebpf.Map
}

func (d *datapath) tableSwap() *tableSwap { return &tableSwap{outer: d.objs.DsrMaglev} }

// add queues t for service id; early allows swapping it in before flush.
func (s *tableSwap) add(id uint32, t *ebpf.Map, early bool) error {
	s.ids, s.tables = append(s.ids, id), append(s.tables, t)
	if early && len(s.ids) == swapBatch {
		return s.flush()
	}
	return nil
}

// flush swaps in what is queued.
func (s *tableSwap) flush() error {
	defer s.close()
	if len(s.ids) == 0 {
		return nil
	}
	fds := make([]uint32, len(s.tables))
	for i, m := range s.tables {
		fds[i] = uint32(m.FD())
	}
	if _, err := s.outer.BatchUpdate(s.ids, fds, nil); err != nil {
		return fmt.Errorf("maglev tables into dsr_maglev: %w", err)
	}
	return nil
}

// close lets go of the queued tables (those swapped in live on in dsr_maglev).
func (s *tableSwap) close() {
	for _, m := range s.tables {
		m.Close()
	}
	s.ids, s.tables = nil, nil
}

// dropTables removes the tables of services not in keep (or kept without
// one), in one update.
func (d *datapath) dropTables(keep map[uint32]bool) error {
	var id, table uint32 // a table reads back as its map id
	var stale []uint32
	it := d.objs.DsrMaglev.Iterate()
	for it.Next(&id, &table) {
		if !keep[id] {
			stale = append(stale, id)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	if len(stale) == 0 {
		return nil
	}
	if _, err := d.objs.DsrMaglev.BatchDelete(stale, nil); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("dsr_maglev: %w", err)
	}
	return nil
}
