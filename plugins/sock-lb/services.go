package main

import (
	"fmt"

	"github.com/braid-cni/braid/core/chained"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/store"
)

func serviceKey(s store.Service) sockLbLbServiceKey {
	return sockLbLbServiceKey{Vip: maps.IPv4Word(s.VIP), Port: maps.Port16(s.Port), Proto: s.ProtoNumber()}
}

// syncServices writes each service's backends before its entry (so a new
// count never points at a missing slot), then drops what the store lacks.
// A connection already made is never touched: only new connects look here.
func (d *datapath) syncServices(c chained.Cluster, r *plugin.Report) error {
	wantSvc := map[sockLbLbServiceKey]sockLbLbService{}
	wantBe := map[sockLbLbBackendKey]sockLbLbBackend{}
	for _, s := range c.Services {
		for slot, b := range s.Backends {
			k := sockLbLbBackendKey{Id: s.ID, Slot: uint32(slot)}
			v := sockLbLbBackend{Ip: maps.IPv4Word(b.IP), Port: maps.Port16(b.Port)}
			wantBe[k] = v
			if _, err := maps.PutIfChanged(d.objs.LbBackends, k, v); err != nil {
				return fmt.Errorf("backend map: %w", err)
			}
		}
		k, v := serviceKey(s), sockLbLbService{Id: s.ID, Count: uint32(len(s.Backends))}
		wantSvc[k] = v
		changed, err := maps.PutIfChanged(d.objs.LbServices, k, v)
		if err != nil {
			return fmt.Errorf("service map: %w (it holds %d services)", err, d.objs.LbServices.MaxEntries())
		}
		if !changed {
			continue
		}
		r.Changed("service %s %s:%d/%s -> %d backends", s.Name, s.VIP, s.Port, s.Protocol, len(s.Backends))
	}
	removed, err := maps.DeleteExcept(d.objs.LbServices, wantSvc)
	if err != nil {
		return err
	}
	if len(removed) > 0 {
		r.Changed("service map: removed %d services", len(removed))
	}
	_, err = maps.DeleteExcept(d.objs.LbBackends, wantBe)
	return err
}
