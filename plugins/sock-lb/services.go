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

// nodePortKey is s's key in lb_nodeports; ok is false for a service
// without a node port.
func nodePortKey(s store.Service) (k sockLbLbNodeportKey, ok bool) {
	if s.Type != store.NodePort || s.NodePort == 0 {
		return k, false
	}
	return sockLbLbNodeportKey{Port: maps.Port16(s.NodePort), Proto: s.ProtoNumber()}, true
}

// serviceEntry is s's value in lb_services and lb_nodeports. A node port
// balances over all of the service's backends whatever its
// externalTrafficPolicy: the clients here are in the cluster (a pod, the
// node), and Local is about external clients (their source address, no
// second hop), as in kube-proxy and Cilium's socket LB.
func serviceEntry(s store.Service) sockLbLbService {
	return sockLbLbService{Id: s.ID, Count: uint32(len(s.Backends)), Affinity: s.AffinityTimeout}
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

// tables are the maps the service sync writes.
type tables struct {
	svc table[sockLbLbServiceKey, sockLbLbService]
	np  table[sockLbLbNodeportKey, sockLbLbService]
	be  table[sockLbLbBackendKey, sockLbLbBackend]
}

func (d *datapath) syncServices(c chained.Cluster, r *plugin.Report) error {
	t := tables{
		svc: bpfTable[sockLbLbServiceKey, sockLbLbService]{d.objs.LbServices},
		np:  bpfTable[sockLbLbNodeportKey, sockLbLbService]{d.objs.LbNodeports},
		be:  bpfTable[sockLbLbBackendKey, sockLbLbBackend]{d.objs.LbBackends},
	}
	if err := syncServices(t, c.Services, r); err != nil {
		return err
	}
	if err := d.syncNodeIPs(c, r); err != nil {
		return err
	}
	return d.sweepAffinity(c.Services)
}

// nodeIPs is what lb_nodeips must hold: this node's IP and its peers'.
func nodeIPs(c chained.Cluster) map[uint32]uint32 {
	want := map[uint32]uint32{}
	if c.Node.NodeIP.Is4() {
		want[maps.IPv4Word(c.Node.NodeIP)] = 0
	}
	for _, p := range c.Peers {
		want[maps.IPv4Word(p.NodeIP)] = 0
	}
	return want
}

func (d *datapath) syncNodeIPs(c chained.Cluster, r *plugin.Report) error {
	written, removed, err := maps.Sync(d.objs.LbNodeips, nodeIPs(c))
	if err != nil {
		return fmt.Errorf("node IP map: %w (the map holds %d node IPs)", err, d.objs.LbNodeips.MaxEntries())
	}
	if len(written)+len(removed) > 0 {
		r.Changed("node IP map: %d added, %d removed", len(written), len(removed))
	}
	return nil
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
//
// A NodePort service's lb_nodeports entry is the same value as its
// lb_services entry, written and removed at the same points.
func syncServices(t tables, services []store.Service, r *plugin.Report) error {
	wantSvc := make(map[sockLbLbServiceKey]sockLbLbService, len(services))
	wantNP := map[sockLbLbNodeportKey]sockLbLbService{}
	wantBe := map[sockLbLbBackendKey]sockLbLbBackend{}
	var written []string
	for _, s := range services {
		for slot, b := range s.Backends {
			k := sockLbLbBackendKey{Id: s.ID, Slot: uint32(slot)}
			v := sockLbLbBackend{Ip: maps.IPv4Word(b.IP), Port: maps.Port16(b.Port)}
			wantBe[k] = v
			if _, err := t.be.PutIfChanged(k, v); err != nil {
				return fmt.Errorf("backend map: service %s backend %s: %w (the map holds %d backends)", s.Name, b, err, t.be.MaxEntries())
			}
		}
		k, v := serviceKey(s), serviceEntry(s)
		wantSvc[k] = v
		changed, err := t.svc.PutIfChanged(k, v)
		if err != nil {
			return fmt.Errorf("service map: service %s: %w (the map holds %d services)", s.Name, err, t.svc.MaxEntries())
		}
		if nk, ok := nodePortKey(s); ok {
			wantNP[nk] = v
			npChanged, err := t.np.PutIfChanged(nk, v)
			if err != nil {
				return fmt.Errorf("node port map: service %s node port %d: %w (the map holds %d node ports)", s.Name, s.NodePort, err, t.np.MaxEntries())
			}
			changed = changed || npChanged
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
	removed, err := t.svc.DeleteExcept(wantSvc)
	if err != nil {
		return fmt.Errorf("service map: %w", err)
	}
	if len(removed) > 0 {
		r.Changed("service map: removed %d services", len(removed))
	}
	removedNP, err := t.np.DeleteExcept(wantNP)
	if err != nil {
		return fmt.Errorf("node port map: %w", err)
	}
	if len(removedNP) > 0 {
		r.Changed("node port map: removed %d node ports", len(removedNP))
	}
	if _, err = t.be.DeleteExcept(wantBe); err != nil {
		return fmt.Errorf("backend map: %w", err)
	}
	return nil
}
