package main

import (
	"fmt"
	"slices"

	"github.com/braid-cni/braid/core/chained"
	"github.com/braid-cni/braid/core/maglev"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/store"
)

const svcLocal = 1 // SVC_LOCAL in bpf/dsr.c

// nodePort is one NodePort service as this node serves it.
type nodePort struct {
	svc      store.Service
	backends []store.Backend // those this node balances to
	entry    dsrNodeportSvc
}

// nodePorts lists the NodePort services this node serves, keyed as the
// program looks them up. Local policy keeps only this node's backends.
func (d *datapath) nodePorts(c chained.Cluster) (map[dsrNodeportKey]nodePort, []string) {
	out := map[dsrNodeportKey]nodePort{}
	var problems []string
	for _, s := range c.Services {
		if s.Type != store.NodePort {
			continue
		}
		if s.NodePort < d.conf.portLo || s.NodePort > d.conf.portHi {
			problems = append(problems, fmt.Sprintf("service %s: node port %d is outside nodePortRange %s", s.Name, s.NodePort, d.conf.NodePortRange))
			continue
		}
		np := nodePort{svc: s, backends: s.Backends}
		np.entry = dsrNodeportSvc{Id: s.ID, TableSize: uint32(d.conf.MaglevTableSize)}
		if s.ExternalTrafficPolicy == "Local" {
			np.entry.Flags = svcLocal
			np.backends = slices.DeleteFunc(slices.Clone(s.Backends), func(b store.Backend) bool { return !c.Node.PodCIDR.Contains(b.IP) })
		}
		np.entry.Count = uint32(len(np.backends))
		out[dsrNodeportKey{Port: maps.Port16(s.NodePort), Proto: s.ProtoNumber()}] = np
	}
	return out, problems
}

// syncNodePorts writes each service's Maglev table before its node-port
// entry, then removes what the store no longer has.
func (d *datapath) syncNodePorts(c chained.Cluster, r *plugin.Report) error {
	want, problems := d.nodePorts(c)
	for _, p := range problems {
		r.Problem("%s", p)
	}
	keep := map[dsrNodeportKey]dsrNodeportSvc{}
	tables := map[uint32]bool{}
	for k, np := range want {
		if err := d.writeTable(np); err != nil {
			return err
		}
		changed, err := maps.PutIfChanged(d.objs.DsrNodeports, k, np.entry)
		if err != nil {
			return fmt.Errorf("node-port map: %w", err)
		}
		if changed {
			r.Changed("node port %d/%s (service %s) -> %d backends", np.svc.NodePort, np.svc.Protocol, np.svc.Name, len(np.backends))
		}
		keep[k] = np.entry
		tables[np.svc.ID] = true
	}
	removed, err := maps.DeleteExcept(d.objs.DsrNodeports, keep)
	if err != nil {
		return err
	}
	for _, k := range removed {
		r.Changed("node port %d removed", maps.Unport16(k.Port))
	}
	return d.dropTables(tables)
}

// writeTable builds the service's Maglev table and writes the entries that
// differ from what the map holds.
func (d *datapath) writeTable(np nodePort) error {
	names := make([]string, len(np.backends))
	byName := map[string]store.Backend{}
	for i, b := range np.backends {
		names[i] = b.String()
		byName[names[i]] = b
	}
	table, sorted, err := maglev.Build(names, d.conf.MaglevTableSize)
	if err != nil {
		return fmt.Errorf("service %s: %w", np.svc.Name, err)
	}
	var keys []dsrMaglevKey
	var vals []dsrBackend
	for i, idx := range table {
		b := byName[sorted[idx]]
		k := dsrMaglevKey{Id: np.svc.ID, Index: uint32(i)}
		v := dsrBackend{Ip: maps.IPv4Word(b.IP), Port: maps.Port16(b.Port)}
		var have dsrBackend
		if d.objs.DsrMaglev.Lookup(k, &have) == nil && have == v {
			continue
		}
		keys, vals = append(keys, k), append(vals, v)
	}
	if len(keys) == 0 {
		return nil
	}
	if _, err := d.objs.DsrMaglev.BatchUpdate(keys, vals, nil); err != nil {
		return fmt.Errorf("service %s: maglev table: %w", np.svc.Name, err)
	}
	return nil
}

// dropTables removes Maglev entries of services no longer served.
func (d *datapath) dropTables(keep map[uint32]bool) error {
	var k dsrMaglevKey
	var v dsrBackend
	var stale []dsrMaglevKey
	it := d.objs.DsrMaglev.Iterate()
	for it.Next(&k, &v) {
		if !keep[k.Id] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	if len(stale) == 0 {
		return nil
	}
	_, err := d.objs.DsrMaglev.BatchDelete(stale, nil)
	return err
}
