package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/braid-cni/braid/core/chained"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/store"
	"github.com/cilium/ebpf"
)

const svcLocal = 1 // SVC_LOCAL in bpf/dsr.c

// nodePort is one NodePort service as this node serves it.
type nodePort struct {
	svc      store.Service
	backends []store.Backend // those this node balances to
	entry    dsrNodeportSvc
}

// nodePorts lists the NodePort services this node serves, keyed as the
// program looks them up, and says which it cannot serve: outside
// nodePortRange, or past what the node-port map holds (the store refuses
// that many; an older store may have them).
func (d *datapath) nodePorts(c chained.Cluster) (map[dsrNodeportKey]nodePort, []string) {
	out := map[dsrNodeportKey]nodePort{}
	var problems, unserved []string
	room := int(d.objs.DsrNodeports.MaxEntries())
	for _, s := range c.Services {
		switch {
		case s.Type != store.NodePort:
		case !d.conf.portRange.Contains(s.NodePort):
			problems = append(problems, fmt.Sprintf("service %s: node port %d is outside nodePortRange %s", s.Name, s.NodePort, d.conf.NodePortRange))
		case len(out) == room:
			unserved = append(unserved, s.Name)
		default:
			out[dsrNodeportKey{Port: maps.Port16(s.NodePort), Proto: s.ProtoNumber()}] = d.nodePort(c, s)
		}
	}
	if len(unserved) > 0 {
		problems = append(problems, fmt.Sprintf("%d NodePort services are more than dsr's maps hold (%d): not served: %s",
			room+len(unserved), room, abbreviate(unserved)))
	}
	return out, problems
}

// externals lists the External services (Kubernetes externalIPs and
// LoadBalancer ingress IPs) this node balances when their VIP:port reaches
// its device, keyed as the program looks them up.
func (d *datapath) externals(c chained.Cluster) map[dsrExternalKey]nodePort {
	out := map[dsrExternalKey]nodePort{}
	for _, s := range c.Services {
		if s.External && len(out) < int(d.objs.DsrExternals.MaxEntries()) {
			k := dsrExternalKey{Ip: maps.IPv4Word(s.VIP), Port: maps.Port16(s.Port), Proto: s.ProtoNumber()}
			out[k] = d.nodePort(c, s)
		}
	}
	return out
}

// nodePort is s as this node serves it: Local policy keeps only this
// node's backends.
func (d *datapath) nodePort(c chained.Cluster, s store.Service) nodePort {
	np := nodePort{svc: s, backends: s.Backends}
	np.entry = dsrNodeportSvc{Id: s.ID, TableSize: uint32(d.conf.MaglevTableSize)}
	if s.ExternalTrafficPolicy == "Local" {
		np.entry.Flags = svcLocal
		np.backends = slices.DeleteFunc(slices.Clone(s.Backends), func(b store.Backend) bool { return !c.Node.PodCIDR.Contains(b.IP) })
	}
	np.entry.Count = uint32(len(np.backends))
	return np
}

// syncNodePorts writes each service's Maglev table and node-port entry,
// after removing those of services no longer served (at full maps, a new
// service needs the room of one that went). A table goes in before the
// entry that uses it, but one that shrinks (a smaller table size) after
// its entry says so: an entry never gives more slots than its table has.
func (d *datapath) syncNodePorts(c chained.Cluster, r *plugin.Report) error {
	want, problems := d.nodePorts(c)
	for _, p := range problems {
		r.Problem("%s", p)
	}
	ext := d.externals(c)
	if err := d.dropStale(want, ext, r); err != nil {
		return err
	}
	before, after := d.tableSwap(), d.tableSwap()
	defer before.close()
	defer after.close()
	tables := map[uint32]bool{}
	var built []string
	for k, np := range want {
		t, err := d.buildTable(np)
		if err != nil {
			return err
		}
		if t != nil {
			built = append(built, np.svc.Name)
			if d.shrinks(k, np) {
				after.add(np.svc.ID, t, false)
			} else if err := before.add(np.svc.ID, t, true); err != nil {
				return err
			}
		}
		tables[np.svc.ID] = len(np.backends) > 0
	}
	// External services' tables (those without a node port's).
	for _, np := range ext {
		if _, done := tables[np.svc.ID]; done {
			continue
		}
		t, err := d.buildTable(np)
		if err != nil {
			return err
		}
		if t != nil {
			built = append(built, np.svc.Name)
			if err := before.add(np.svc.ID, t, true); err != nil {
				return err
			}
		}
		tables[np.svc.ID] = len(np.backends) > 0
	}
	if err := before.flush(); err != nil {
		return err
	}
	for k, np := range ext {
		changed, err := maps.PutIfChanged(d.objs.DsrExternals, k, np.entry)
		if err != nil {
			return fmt.Errorf("external map: service %s: %w", np.svc.Name, err)
		}
		if changed {
			r.Changed("external %s:%d/%s (service %s) -> %d backends", np.svc.VIP, np.svc.Port, np.svc.Protocol, np.svc.Name, len(np.backends))
		}
	}
	for k, np := range want {
		changed, err := maps.PutIfChanged(d.objs.DsrNodeports, k, np.entry)
		if err != nil {
			return fmt.Errorf("node-port map: service %s: %w", np.svc.Name, err)
		}
		if changed {
			r.Changed("node port %d/%s (service %s) -> %d backends", np.svc.NodePort, np.svc.Protocol, np.svc.Name, len(np.backends))
		}
	}
	if err := after.flush(); err != nil {
		return err
	}
	if len(built) > 0 {
		slices.Sort(built)
		r.Changed("maglev tables built: %s", abbreviate(built))
	}
	// Now that no entry uses them: the old tables of services whose id
	// changed, and of those left with no backend.
	return d.dropTables(tables)
}

// shrinks: the service's entry has a larger table size than np's.
func (d *datapath) shrinks(k dsrNodeportKey, np nodePort) bool {
	var have dsrNodeportSvc
	return d.objs.DsrNodeports.Lookup(k, &have) == nil && have.Id == np.entry.Id &&
		have.Count > 0 && np.entry.TableSize < have.TableSize
}

// dropStale removes the node-port and external entries not in want and
// ext, then the tables that neither a remaining entry nor want or ext
// uses.
func (d *datapath) dropStale(want map[dsrNodeportKey]nodePort, ext map[dsrExternalKey]nodePort, r *plugin.Report) error {
	used := map[uint32]bool{}
	for _, np := range want {
		used[np.svc.ID] = true
	}
	for _, np := range ext {
		used[np.svc.ID] = true
	}
	var ek dsrExternalKey
	var ev dsrNodeportSvc
	var staleExt []dsrExternalKey
	eit := d.objs.DsrExternals.Iterate()
	for eit.Next(&ek, &ev) {
		if _, ok := ext[ek]; ok {
			used[ev.Id] = true
		} else {
			staleExt = append(staleExt, ek)
		}
	}
	if err := eit.Err(); err != nil {
		return fmt.Errorf("external map: %w", err)
	}
	if err := deleteAll(d.objs.DsrExternals, staleExt); err != nil {
		return err
	}
	for _, k := range staleExt {
		r.Changed("external %s:%d removed", maps.WordIPv4(k.Ip), maps.Unport16(k.Port))
	}
	var k dsrNodeportKey
	var v dsrNodeportSvc
	var stale []dsrNodeportKey
	it := d.objs.DsrNodeports.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; ok {
			used[v.Id] = true
		} else {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("node-port map: %w", err)
	}
	for _, k := range stale {
		if err := d.objs.DsrNodeports.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("node-port map: %w", err)
		}
		r.Changed("node port %d removed", maps.Unport16(k.Port))
	}
	return d.dropTables(used)
}

// abbreviate lists names, the first few of many.
func abbreviate(names []string) string {
	const shown = 5
	if len(names) <= shown {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:shown], ", "), len(names)-shown)
}
