package main

import (
	"fmt"

	"github.com/braid-cni/braid/core/chained"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/store"
	"github.com/cilium/ebpf"
)

func serviceKey(s store.Service) sockLbLbServiceKey {
	return sockLbLbServiceKey{Vip: maps.IPv4Word(s.VIP), Port: maps.Port16(s.Port), Proto: s.ProtoNumber()}
}

// table is the part of a BPF hash map the service sync uses: the pinned
// map in the plugin, a recording fake in the tests.
type table[K, V comparable] interface {
	PutIfChanged(k K, v V) (bool, error)
	DeleteExcept(keep map[K]V) ([]K, error)
	MaxEntries() uint32
}

type bpfTable[K, V comparable] struct{ m *ebpf.Map }

func (t bpfTable[K, V]) PutIfChanged(k K, v V) (bool, error) { return maps.PutIfChanged(t.m, k, v) }
func (t bpfTable[K, V]) DeleteExcept(keep map[K]V) ([]K, error) {
	return maps.DeleteExcept(t.m, keep)
}
func (t bpfTable[K, V]) MaxEntries() uint32 { return t.m.MaxEntries() }

func (d *datapath) syncServices(c chained.Cluster, r *plugin.Report) error {
	return syncServices(
		bpfTable[sockLbLbServiceKey, sockLbLbService]{d.objs.LbServices},
		bpfTable[sockLbLbBackendKey, sockLbLbBackend]{d.objs.LbBackends},
		c.Services, r)
}

// maxListedChanges is how many written services a report lists one by one;
// beyond it (a sync after `braid service apply` of thousands) it says how many.
const maxListedChanges = 20

// syncServices makes the service and backend maps hold exactly services.
//
// The order is what keeps connects made during the sync working: the
// programs read a service entry, then slot rand % count of its backends. So
// a service's slots are written before its entry (a grown count never points
// at a slot not yet there), and stale slots and services are removed only
// after every entry is written (a shrunk count is in place before the slots
// beyond it go; a removed service's entry goes before its slots).
func syncServices(svcMap table[sockLbLbServiceKey, sockLbLbService], beMap table[sockLbLbBackendKey, sockLbLbBackend],
	services []store.Service, r *plugin.Report) error {
	wantSvc := make(map[sockLbLbServiceKey]sockLbLbService, len(services))
	wantBe := map[sockLbLbBackendKey]sockLbLbBackend{}
	var written []string
	for _, s := range services {
		for slot, b := range s.Backends {
			k := sockLbLbBackendKey{Id: s.ID, Slot: uint32(slot)}
			v := sockLbLbBackend{Ip: maps.IPv4Word(b.IP), Port: maps.Port16(b.Port)}
			wantBe[k] = v
			if _, err := beMap.PutIfChanged(k, v); err != nil {
				return fmt.Errorf("backend map: service %s backend %s: %w (the map holds %d backends)", s.Name, b, err, beMap.MaxEntries())
			}
		}
		k, v := serviceKey(s), sockLbLbService{Id: s.ID, Count: uint32(len(s.Backends))}
		wantSvc[k] = v
		changed, err := svcMap.PutIfChanged(k, v)
		if err != nil {
			return fmt.Errorf("service map: service %s: %w (the map holds %d services)", s.Name, err, svcMap.MaxEntries())
		}
		if changed {
			written = append(written, fmt.Sprintf("service %s %s:%d/%s -> %d backends", s.Name, s.VIP, s.Port, s.Protocol, len(s.Backends)))
		}
	}
	if len(written) > maxListedChanges {
		r.Changed("service map: wrote %d services", len(written))
	} else {
		for _, w := range written {
			r.Changed("%s", w)
		}
	}
	removed, err := svcMap.DeleteExcept(wantSvc)
	if err != nil {
		return fmt.Errorf("service map: %w", err)
	}
	if len(removed) > 0 {
		r.Changed("service map: removed %d services", len(removed))
	}
	if _, err = beMap.DeleteExcept(wantBe); err != nil {
		return fmt.Errorf("backend map: %w", err)
	}
	return nil
}
