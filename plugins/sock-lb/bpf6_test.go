package main

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/chained"
	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/internal/sockprobe"
)

// mapped is vipPort as a dual-stack socket names it: [::ffff:a.b.c.d]:port.
func mapped(vipPort string) string {
	ap := netip.MustParseAddrPort(vipPort)
	return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port()).String()
}

// TestSockLBMapped: IPv6 sockets reach IPv4 services at v4-mapped addresses
// through the same maps, and see the VIP (v4-mapped) as their peer.
func TestSockLBMapped(t *testing.T) {
	e := newLB(t)
	a := tcpBackend(t, e.node, "127.0.0.2", "a")
	b := tcpBackend(t, e.node, "127.0.0.3", "b")
	u1 := udpBackend(t, e.node, "127.0.0.2", "u1")
	u2 := udpBackend(t, e.node, "127.0.0.3", "u2")
	e.reconcile(svc(1, "web", vipWeb, store.TCP, a, b), svc(3, "dns", vipDNS, store.UDP, u1, u2),
		svc(4, "empty", vipEmpty, store.TCP))
	p := e.probe(e.node)

	t.Run("TCP", func(t *testing.T) {
		before := e.counters()
		const n = 40
		rs := do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb, N: n, Mapped: true, StopOnError: true})
		for _, r := range rs {
			if r.Err != "" || r.Peer != mapped(vipWeb) {
				t.Fatalf("IPv6 connect to %s: %s, want a backend's answer, peer %s", mapped(vipWeb), show(r), mapped(vipWeb))
			}
		}
		if got := tally(rs); got["a"] == 0 || got["b"] == 0 {
			t.Errorf("%d IPv6 connects: %v, want both backends (2^-39 to miss one)", n, got)
		}
		after := e.counters()
		if d := after[cntConnectLB] - before[cntConnectLB]; d != n {
			t.Errorf("connect_lb counted %d, want %d", d, n)
		}
		if d := after[cntMappedLB] - before[cntMappedLB]; d != n {
			t.Errorf("mapped_lb counted %d, want %d", d, n)
		}
	})
	t.Run("UDP", func(t *testing.T) {
		const n = 40
		rs := do(t, p, sockprobe.Request{Op: sockprobe.OpUDP, Dst: vipDNS, N: n, Mapped: true, StopOnError: true})
		for _, r := range rs {
			if r.Err != "" || r.From != mapped(vipDNS) {
				t.Fatalf("IPv6 sendto %s: %s, want an answer from %s", mapped(vipDNS), show(r), mapped(vipDNS))
			}
		}
		if got := tally(rs); got["u1"] == 0 || got["u2"] == 0 {
			t.Errorf("%d IPv6 datagrams: %v, want both backends", n, got)
		}
		r := do(t, p, sockprobe.Request{Op: sockprobe.OpUDPConnected, Dst: vipDNS, Mapped: true})[0]
		if r.Err != "" || r.Peer != mapped(vipDNS) || r.From != mapped(vipDNS) {
			t.Errorf("connected IPv6 UDP to %s: %s, want peer and source %s", mapped(vipDNS), show(r), mapped(vipDNS))
		}
	})
	t.Run("empty refuses, non-service untouched", func(t *testing.T) {
		if r := do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipEmpty, Mapped: true})[0]; r.Err != "ECONNREFUSED" {
			t.Errorf("IPv6 connect to the empty %s: %s, want ECONNREFUSED", vipEmpty, show(r))
		}
		if r := do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipNoSvc, Mapped: true})[0]; r.Err != "ENETUNREACH" {
			t.Errorf("IPv6 connect to %s (no service): %s, want ENETUNREACH", vipNoSvc, show(r))
		}
	})
}

// Node IPs and node ports of TestSockLBNodePort.
const (
	nodeIP    = "198.18.200.1" // this node's
	peerIP    = "198.18.200.2" // another node's
	notNodeIP = "198.18.200.9"
	npTCP     = 30080
	npUDP     = 30053
)

// TestSockLBNodePort: <any node IP>:<nodePort> is balanced like the
// service's VIP; an address that is not a node's, or a port that is no
// node port, is not. Nothing here is routed: untouched means ENETUNREACH.
func TestSockLBNodePort(t *testing.T) {
	e := newLB(t)
	a := tcpBackend(t, e.node, "127.0.0.2", "a")
	b := tcpBackend(t, e.node, "127.0.0.3", "b")
	u1 := udpBackend(t, e.node, "127.0.0.2", "u1")
	web := svc(1, "web", vipWeb, store.TCP, a, b)
	web.Type, web.NodePort, web.ExternalTrafficPolicy = store.NodePort, npTCP, "Local"
	dns := svc(3, "dns", vipDNS, store.UDP, u1)
	dns.Type, dns.NodePort = store.NodePort, npUDP
	empty := svc(4, "empty", vipEmpty, store.TCP)
	empty.Type, empty.NodePort = store.NodePort, npTCP+1
	cluster := chained.Cluster{
		Node:     store.Node{Name: "n1", NodeIP: netip.MustParseAddr(nodeIP)},
		Peers:    []store.Peer{{Name: "n2", NodeIP: netip.MustParseAddr(peerIP)}},
		Services: []store.Service{web, dns, empty},
	}
	e.reconcileCluster(cluster)
	if err := e.d.CheckNode(cluster); err != nil {
		t.Fatalf("CHECK after reconcile: %v", err)
	}
	p := e.probe(e.node)

	for _, ip := range []string{nodeIP, peerIP} {
		t.Run("node "+ip, func(t *testing.T) {
			before := e.counters()
			dst := fmt.Sprintf("%s:%d", ip, npTCP)
			const n = 40
			rs := do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: dst, N: n, StopOnError: true})
			for _, r := range rs {
				if r.Err != "" || r.Peer != dst {
					t.Fatalf("connect to %s: %s, want a backend's answer, peer %s", dst, show(r), dst)
				}
			}
			// externalTrafficPolicy Local does not narrow an in-cluster
			// client's choice.
			if got := tally(rs); got["a"] == 0 || got["b"] == 0 {
				t.Errorf("%d connects to %s: %v, want both backends", n, dst, got)
			}
			udst := fmt.Sprintf("%s:%d", ip, npUDP)
			if r := do(t, p, sockprobe.Request{Op: sockprobe.OpUDP, Dst: udst})[0]; r.Err != "" || r.Reply != "u1" || r.From != udst {
				t.Errorf("UDP to %s: %s, want u1's answer from %s", udst, show(r), udst)
			}
			if r := do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: dst, Mapped: true})[0]; r.Err != "" || r.Peer != mapped(dst) {
				t.Errorf("IPv6 connect to %s: %s", mapped(dst), show(r))
			}
			after := e.counters()
			if d := after[cntNodePortLB] - before[cntNodePortLB]; d != n+2 {
				t.Errorf("nodeport_lb counted %d, want %d", d, n+2)
			}
			edst := fmt.Sprintf("%s:%d", ip, npTCP+1)
			if r := do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: edst})[0]; r.Err != "ECONNREFUSED" {
				t.Errorf("connect to %s (no backends): %s, want ECONNREFUSED", edst, show(r))
			}
		})
	}
	t.Run("not a node or not a node port", func(t *testing.T) {
		for _, dst := range []string{fmt.Sprintf("%s:%d", notNodeIP, npTCP), fmt.Sprintf("%s:%d", nodeIP, npTCP+2),
			fmt.Sprintf("%s:%d", nodeIP, npUDP)} { // the UDP node port over TCP
			if r := do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: dst})[0]; r.Err != "ENETUNREACH" {
				t.Errorf("connect to %s: %s, want ENETUNREACH (untouched)", dst, show(r))
			}
		}
	})
	t.Run("peer gone, service type changed", func(t *testing.T) {
		c := cluster
		c.Peers = nil
		web2 := web
		web2.Type, web2.NodePort, web2.ExternalTrafficPolicy = store.ClusterIP, 0, ""
		c.Services = []store.Service{web2, dns, empty}
		e.reconcileCluster(c)
		if err := e.d.CheckNode(c); err != nil {
			t.Fatalf("CHECK: %v", err)
		}
		for _, dst := range []string{fmt.Sprintf("%s:%d", peerIP, npUDP), fmt.Sprintf("%s:%d", nodeIP, npTCP)} {
			op := sockprobe.OpUDP
			if dst[len(dst)-2:] == "80" {
				op = sockprobe.OpTCP
			}
			if r := do(t, p, sockprobe.Request{Op: op, Dst: dst})[0]; r.Err != "ENETUNREACH" {
				t.Errorf("%s to %s: %s, want ENETUNREACH (no longer a node port)", op, dst, show(r))
			}
		}
		e.reconcileCluster(cluster)
	})
	t.Run("CHECK names a stale node IP", func(t *testing.T) {
		if err := e.d.objs.LbNodeips.Put(uint32(0x09c812c6), uint32(0)); err != nil { // 198.18.200.9
			t.Fatal(err)
		}
		if err := e.d.CheckNode(cluster); err == nil {
			t.Errorf("CHECK passed with %s in the node IP map", notNodeIP)
		}
		e.reconcileCluster(cluster)
		if err := e.d.CheckNode(cluster); err != nil {
			t.Errorf("CHECK after reconcile: %v", err)
		}
	})
}

// TestSockLBAffinity: a service with a timeout keeps each client (netns)
// on one backend, refreshed at each connect, until the timeout runs out or
// the backend leaves; one without spreads.
func TestSockLBAffinity(t *testing.T) {
	e := newLB(t)
	var bs []store.Backend
	for i := range 3 {
		bs = append(bs, tcpBackend(t, e.node, fmt.Sprintf("127.0.0.%d", 2+i), string(rune('a'+i))))
	}
	sticky := svc(1, "sticky", vipWeb, store.TCP, bs...)
	sticky.AffinityTimeout = 1
	plain := svc(2, "plain", vipAdmin, store.TCP, bs...)
	services := []store.Service{sticky, plain}
	e.reconcile(services...)
	p := e.probe(e.node)

	const n = 50
	first := ""
	t.Run("one client, one backend", func(t *testing.T) {
		before := e.counters()
		got := tally(do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb, N: n, StopOnError: true}))
		if len(got) != 1 {
			t.Fatalf("%d connects with affinity: %v, want all on one backend", n, got)
		}
		for k := range got {
			first = k
		}
		if d := e.counters()[cntAffinityHit] - before[cntAffinityHit]; d != n-1 {
			t.Errorf("affinity_hit counted %d, want %d", d, n-1)
		}
		if got := tally(do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipAdmin, N: n})); len(got) != 3 {
			t.Errorf("%d connects without affinity: %v, want all 3 backends", n, got)
		}
	})
	t.Run("another client has its own", func(t *testing.T) {
		other := e.probe(newNetns(t))
		before := e.counters()
		// The other netns has no backends: its connects are refused or
		// unanswered, but each one is picked (the pick is what we count).
		do(t, other, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb, N: 3})
		if d := e.counters()[cntAffinityHit] - before[cntAffinityHit]; d != 2 {
			t.Errorf("affinity_hit counted %d for a new client's 3 connects, want 2 (its first is a new pick)", d)
		}
	})
	t.Run("other backends moved or removed: kept", func(t *testing.T) {
		// Moved to the last slot, then the first slot removed (it moves
		// down one): the client keeps its backend wherever it is listed.
		i := int(first[0] - 'a')
		others := append(append([]store.Backend{}, bs[:i]...), bs[i+1:]...)
		s := sticky
		for _, list := range [][]store.Backend{append(append([]store.Backend{}, others...), bs[i]), {others[1], bs[i]}} {
			s.Backends = list
			e.reconcile(s, plain)
			before := e.counters()
			got := tally(do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb, N: 10, StopOnError: true}))
			if got[first] != 10 {
				t.Errorf("backends %v: %v, want all 10 still on %s", list, got, first)
			}
			after := e.counters()
			if d := after[cntAffinityHit] - before[cntAffinityHit]; d != 10 {
				t.Errorf("affinity_hit counted %d, want 10", d)
			}
			if d := after[cntAffinityStale] - before[cntAffinityStale]; d != 0 {
				t.Errorf("affinity_stale counted %d, want 0", d)
			}
		}
		e.reconcile(services...)
	})
	t.Run("backend removed", func(t *testing.T) {
		i := int(first[0] - 'a')
		s := sticky
		s.Backends = append(append([]store.Backend{}, bs[:i]...), bs[i+1:]...)
		e.reconcile(s, plain)
		before := e.counters()
		got := tally(do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb, N: 10, StopOnError: true}))
		if len(got) != 1 || got[first] != 0 {
			t.Errorf("after removing %s: %v, want 10 on one other backend", first, got)
		}
		if d := e.counters()[cntAffinityStale] - before[cntAffinityStale]; d != 1 {
			t.Errorf("affinity_stale counted %d, want 1", d)
		}
		e.reconcile(services...)
	})
	t.Run("timeout", func(t *testing.T) {
		do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb})
		time.Sleep(1200 * time.Millisecond)
		before := e.counters()
		do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb})
		if d := e.counters()[cntAffinityHit] - before[cntAffinityHit]; d != 0 {
			t.Errorf("a connect 1.2 s after the last (timeout 1 s) kept its backend: affinity_hit +%d", d)
		}
	})
	t.Run("sync sweeps", func(t *testing.T) {
		do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb})
		if n := affinityEntries(t, e); n == 0 {
			t.Fatal("no affinity entry after a connect")
		}
		e.reconcile(plain) // sticky gone: its entries go
		if n := affinityEntries(t, e); n != 0 {
			t.Errorf("%d affinity entries after the service went, want 0", n)
		}
	})
}

func affinityEntries(t *testing.T, e *lbEnv) int {
	t.Helper()
	var k sockLbLbAffinityKey
	var v sockLbLbAffinityValue
	n := 0
	it := e.d.objs.LbAffinity.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSweepAffinityFullMap: on a full lb_affinity, a sync deletes exactly
// the expired entries and those of services gone or without affinity, and
// keeps the live ones, in a bounded time (batched syscalls).
func TestSweepAffinityFullMap(t *testing.T) {
	e := newLB(t)
	live := svc(1, "live", vipWeb, store.TCP)
	live.AffinityTimeout = 100
	plain := svc(2, "plain", vipAdmin, store.TCP) // no affinity
	now, err := monotonicNS()
	if err != nil {
		t.Fatal(err)
	}
	const n = 1 << 14 // of each kind: 4 kinds fill the map (65,536)
	var keys []sockLbLbAffinityKey
	var vals []sockLbLbAffinityValue
	add := func(id uint32, last uint64, base int) {
		for i := range n {
			keys = append(keys, sockLbLbAffinityKey{NetnsCookie: uint64(base + i), Id: id})
			vals = append(vals, sockLbLbAffinityValue{LastNs: last, Ip: 1, Port: 1})
		}
	}
	add(1, now, 0)         // live
	add(1, now-101*1e9, n) // expired
	add(2, now, 2*n)       // service without affinity
	add(7, now, 3*n)       // service gone
	if _, err := e.d.objs.LbAffinity.BatchUpdate(keys, vals, nil); err != nil {
		t.Fatal(err)
	}
	var k sockLbLbAffinityKey
	var v sockLbLbAffinityValue
	present := map[bool]int{} // live or not -> entries in the map (the LRU may have evicted some)
	for it := e.d.objs.LbAffinity.Iterate(); it.Next(&k, &v); {
		present[k.Id == 1 && v.LastNs == now]++
	}
	start := time.Now()
	if err := e.d.sweepAffinity([]store.Service{live, plain}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	left := map[bool]int{}
	for it := e.d.objs.LbAffinity.Iterate(); it.Next(&k, &v); {
		left[k.Id == 1 && v.LastNs == now]++
	}
	t.Logf("sweep of %d entries (%d live): %v", present[true]+present[false], present[true], took)
	if left[false] != 0 || left[true] != present[true] || present[true] < n/2 {
		t.Errorf("after the sweep: %d live and %d stale entries left, want %d live (of %d written) and none stale",
			left[true], left[false], present[true], n)
	}
	if took > 5*time.Second {
		t.Errorf("the sweep took %v", took)
	}
}
