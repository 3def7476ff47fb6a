package main

// The node-port sync against the programs' own maps (private, as in
// bpf_test.go): each service's Maglev table is its own inner map of
// dsr_maglev, swapped whole, dropped with its service, rebuilt when the
// table size changes; and as many services as the node-port map holds.

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/chained"
	"github.com/braid-cni/braid/core/maglev"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/internal/packet"
	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// syncer is a datapath on the test's objects, serving the default range.
func syncer(t *testing.T, d *testDP, tableSize int) *datapath {
	t.Helper()
	r, err := store.ParsePortRange(store.DefaultNodePortRange)
	if err != nil {
		t.Fatal(err)
	}
	conf := &NetConf{NodePortRange: store.DefaultNodePortRange, portRange: r, MaglevTableSize: tableSize}
	return &datapath{conf: conf, objs: d.objs}
}

// cluster is node 1 with services.
func cluster(svcs ...store.Service) chained.Cluster {
	return chained.Cluster{Node: store.Node{Name: "node1", NodeIP: node1, PodCIDR: netip.MustParsePrefix("198.19.1.0/24")}, Services: svcs}
}

// nodePortServices are n NodePort services from node port 30100 on, ids
// from 100, each with two backends on node 2.
func nodePortServices(n int) []store.Service {
	var out []store.Service
	for i := range n {
		out = append(out, testService(uint32(100+i), uint16(30100+i), []netip.AddrPort{
			netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, 2, byte(1 + i%250)}), 8080),
			netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, 2, byte(1 + i%250)}), 8081),
		}))
		out[i].Name = fmt.Sprintf("np%04d", i)
	}
	return out
}

func (d *testDP) sync(t *testing.T, dp *datapath, svcs ...store.Service) *plugin.Report {
	t.Helper()
	r := &plugin.Report{}
	if err := dp.syncNodePorts(cluster(svcs...), r); err != nil {
		t.Fatalf("sync: %v", err)
	}
	return r
}

// forwards checks that a SYN to node 1's port reaches one of backends
// (overlay mode: no fib needed).
func (d *testDP) forwards(t *testing.T, port uint16, backends []store.Backend) {
	t.Helper()
	d.settings(t, dsrDsrConf{NodeIp: maps.IPv4Word(node1), DeviceMtu: 1500, OverlayIfindex: 4242})
	f := d.run(t, runHere, d.objs.FromNetdev, tcpFrame(client, npAddr(node1, port), packet.SYN, nil, nil), skbContext{},
		verdictRedirect, ctrDSRForward, ctrDSROptAdded)
	_, dst := f.AddrPorts()
	if !slices.Contains(backends, store.Backend{IP: dst.Addr(), Port: dst.Port()}) {
		t.Errorf("node port %d went to %s, not one of its backends %v", port, dst, backends)
	}
}

// table is the inner map dsr_maglev holds for id (the caller closes it).
func (d *testDP) table(t *testing.T, id uint32) *ebpf.Map {
	t.Helper()
	var m *ebpf.Map
	if err := d.objs.DsrMaglev.Lookup(id, &m); err != nil {
		t.Fatalf("dsr_maglev[%d]: %v", id, err)
	}
	return m
}

func (d *testDP) tableIDs(t *testing.T) []uint32 {
	t.Helper()
	var id, inner uint32
	var ids []uint32
	it := d.objs.DsrMaglev.Iterate()
	for it.Next(&id, &inner) {
		ids = append(ids, id)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	return ids
}

// 200 NodePort services at the default table size (3.3 million slots, three
// times what the old single Maglev map held in all) load, the last one
// forwards, and a second sync changes nothing.
func TestManyNodePorts(t *testing.T) {
	d := loadDSR(t)
	dp := syncer(t, d, maglev.DefaultSize)
	svcs := nodePortServices(200)
	start := time.Now()
	r := d.sync(t, dp, svcs...)
	t.Logf("200 services, tables of %d: first sync %v", maglev.DefaultSize, time.Since(start))
	if len(r.Problems) > 0 {
		t.Fatalf("problems: %v", r.Problems)
	}
	last := svcs[len(svcs)-1]
	d.forwards(t, last.NodePort, last.Backends)
	d.forwards(t, svcs[0].NodePort, svcs[0].Backends)
	if ids := d.tableIDs(t); len(ids) != 200 {
		t.Errorf("%d tables in dsr_maglev, want 200", len(ids))
	}
	start = time.Now()
	if r := d.sync(t, dp, svcs...); len(r.Changes) > 0 || len(r.Problems) > 0 {
		t.Errorf("second sync: changes %v, problems %v", r.Changes, r.Problems)
	}
	t.Logf("second sync (nothing to do) %v", time.Since(start))
}

// A backend change builds a new table and swaps it in whole: the old map
// is left as it was (a packet holding it reads a consistent table), and the
// new one is what the backends make.
func TestTableSwappedWhole(t *testing.T) {
	d := loadDSR(t)
	dp := syncer(t, d, 251)
	svc := nodePortServices(1)[0]
	d.sync(t, dp, svc)
	old := d.table(t, svc.ID)
	defer old.Close()
	before, err := dp.readTable(svc.ID)
	if err != nil {
		t.Fatal(err)
	}

	svc.Backends = append(svc.Backends, store.Backend{IP: netip.MustParseAddr("198.19.3.9"), Port: 8080})
	r := d.sync(t, dp, svc)
	if !slices.ContainsFunc(r.Changes, func(c string) bool { return strings.Contains(c, "maglev tables built: "+svc.Name) }) {
		t.Errorf("changes %v do not name the rebuilt table", r.Changes)
	}
	cur := d.table(t, svc.ID)
	defer cur.Close()
	oldInfo, _ := old.Info()
	curInfo, _ := cur.Info()
	oldID, _ := oldInfo.ID()
	curID, _ := curInfo.ID()
	if oldID == curID {
		t.Fatalf("the table was changed in place (map %d), not swapped", oldID)
	}
	err = withMemory(old, unix.PROT_READ, func(mem []byte) {
		if !bytes.Equal(mem, before) {
			t.Error("the old table changed")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := dp.table(nodePort{svc: svc, backends: svc.Backends})
	if got, err := dp.readTable(svc.ID); err != nil || !bytes.Equal(got, want) {
		t.Errorf("new table is not what the backends make (%v)", err)
	}
	d.forwards(t, svc.NodePort, svc.Backends)
}

// A table-size change rebuilds every table at the new size; the entries
// follow.
func TestTableSizeChangeRebuilds(t *testing.T) {
	d := loadDSR(t)
	svcs := nodePortServices(3)
	for _, size := range []int{251, 1021, 251} {
		dp := syncer(t, d, size)
		d.sync(t, dp, svcs...)
		for _, s := range svcs {
			m := d.table(t, s.ID)
			if m.MaxEntries() != uint32(size) {
				t.Errorf("size %d: service %s's table has %d slots", size, s.Name, m.MaxEntries())
			}
			m.Close()
			var e dsrNodeportSvc
			if err := d.objs.DsrNodeports.Lookup(dsrNodeportKey{Port: maps.Port16(s.NodePort), Proto: packet.ProtoTCP}, &e); err != nil || e.TableSize != uint32(size) {
				t.Errorf("size %d: entry %+v (%v)", size, e, err)
			}
			d.forwards(t, s.NodePort, s.Backends)
		}
		checkNodePorts(t, dp, svcs...)
	}
}

// checkNodePorts runs CHECK's node-port part (the rest needs devices).
func checkNodePorts(t *testing.T, dp *datapath, svcs ...store.Service) {
	t.Helper()
	want, _ := dp.nodePorts(cluster(svcs...))
	for k, np := range want {
		if err := dp.checkNodePort(k, np); err != nil {
			t.Errorf("check: %v", err)
		}
	}
}

// A service that goes takes its table with it; one left without backends
// keeps its entry (which refuses) but no table.
func TestTablesDropped(t *testing.T) {
	d := loadDSR(t)
	dp := syncer(t, d, 251)
	svcs := nodePortServices(3)
	d.sync(t, dp, svcs...)
	empty := svcs[1]
	empty.Backends = nil
	d.sync(t, dp, svcs[0], empty)
	if ids := d.tableIDs(t); !slices.Equal(ids, []uint32{svcs[0].ID}) {
		t.Errorf("tables of %v left, want only %d's", ids, svcs[0].ID)
	}
	d.settings(t, dsrDsrConf{NodeIp: maps.IPv4Word(node1), DeviceMtu: 1500, OverlayIfindex: 4242})
	d.run(t, runHere, d.objs.FromNetdev, tcpFrame(client, npAddr(node1, empty.NodePort), packet.SYN, nil, nil), skbContext{},
		verdictShot, ctrDropNoBackend)
	// The removed service's node port is the stack's again.
	d.run(t, runHere, d.objs.FromNetdev, tcpFrame(client, npAddr(node1, svcs[2].NodePort), packet.SYN, nil, nil), skbContext{},
		verdictNext)
}

// More NodePort services than the maps hold: the first ones (by name) are
// served, the rest named in a problem, and the sync does not fail.
func TestNodePortsBeyondTheMaps(t *testing.T) {
	d := loadDSR(t)
	dp := syncer(t, d, 251)
	room := int(d.objs.DsrNodeports.MaxEntries())
	var svcs []store.Service
	for i := range room + 2 {
		s := testService(uint32(100+i), uint16(1+i), nil) // no backends: no tables to build
		s.Name = fmt.Sprintf("np%05d", i)
		svcs = append(svcs, s)
	}
	dp.conf.portRange = store.PortRange{First: 1, Last: 65535}
	r := d.sync(t, dp, svcs...)
	want := fmt.Sprintf("%d NodePort services are more than dsr's maps hold (%d): not served: %s, %s", room+2, room, svcs[room].Name, svcs[room+1].Name)
	if !slices.Contains(r.Problems, want) {
		t.Errorf("problems %v, want %q", r.Problems, want)
	}
	var k dsrNodeportKey
	var v dsrNodeportSvc
	n := 0
	for it := d.objs.DsrNodeports.Iterate(); it.Next(&k, &v); n++ {
		if maps.Unport16(k.Port) > uint16(room) {
			t.Errorf("node port %d served, past the first %d", maps.Unport16(k.Port), room)
		}
	}
	if n != room {
		t.Errorf("%d node ports in the map, want %d", n, room)
	}
}

// tableSpec is the template of bpf/dsr.c's dsr_maglev but for its size:
// the kernel refuses an inner map that differs otherwise.
func TestTableSpecMatchesTemplate(t *testing.T) {
	spec, err := loadDsr()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := spec.Maps[dsrMapDsrMaglev].InnerMap
	got := tableSpec(int(tmpl.MaxEntries))
	if got.Type != tmpl.Type || got.KeySize != tmpl.KeySize || got.ValueSize != tmpl.ValueSize || got.Flags != tmpl.Flags {
		t.Errorf("tableSpec %+v, template %+v", got, tmpl)
	}
}

// The store refuses what the maps cannot hold, so its limit must be theirs.
func TestMapsHoldWhatTheStoreAllows(t *testing.T) {
	spec, err := loadDsr()
	if err != nil {
		t.Fatal(err)
	}
	if got := spec.Maps[dsrMapDsrNodeports].MaxEntries; got != store.MaxNodePorts {
		t.Errorf("dsr_nodeports holds %d, store.MaxNodePorts is %d", got, store.MaxNodePorts)
	}
	// Each service's table, and the one of a service that took its node
	// port, during a sync.
	if got := spec.Maps[dsrMapDsrMaglev].MaxEntries; got != 2*store.MaxNodePorts {
		t.Errorf("dsr_maglev holds %d tables, want twice store.MaxNodePorts (%d)", got, store.MaxNodePorts)
	}
}

// As many services as the node-port map holds, each with a table, load; and
// all of them deleted and added again at once (new ids, the same node
// ports: old and new tables side by side during the sync) still fit.
func TestFullMapsTurnOver(t *testing.T) {
	d := loadDSR(t)
	dp := syncer(t, d, 2) // the smallest table: one backend, two slots
	dp.conf.portRange = store.PortRange{First: 1, Last: 65535}
	room := int(d.objs.DsrNodeports.MaxEntries())
	svcs := make([]store.Service, room)
	for i := range svcs {
		svcs[i] = testService(uint32(100+i), uint16(1+i), []netip.AddrPort{netip.MustParseAddrPort("198.19.2.5:8080")})
	}
	start := time.Now()
	if r := d.sync(t, dp, svcs...); len(r.Problems) > 0 {
		t.Fatalf("problems: %v", r.Problems)
	}
	t.Logf("%d services: %v", room, time.Since(start))
	for i := range svcs {
		svcs[i].ID += uint32(room)
	}
	if r := d.sync(t, dp, svcs...); len(r.Problems) > 0 {
		t.Fatalf("problems after the turnover: %v", r.Problems)
	}
	ids := d.tableIDs(t)
	if len(ids) != room || ids[0] != svcs[0].ID {
		t.Errorf("%d tables from id %d after the turnover, want %d from %d", len(ids), ids[0], room, svcs[0].ID)
	}
	last := svcs[room-1]
	d.forwards(t, last.NodePort, last.Backends)
}
