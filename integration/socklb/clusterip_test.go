package socklb

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/sockprobe"
)

// Services of TestClusterIP.
const (
	vipWeb   = "198.18.100.10:80" // tcp: b2, b3
	vipDNS   = "198.18.100.10:53" // udp: b2, b3 (same VIP, other protocol)
	vipEmpty = "198.18.100.11:80" // tcp, no backend
	vipNone  = "198.18.100.10:81" // the web VIP on a port no service has
)

// TestClusterIP: three nodes on native routing (chain-configs/native-lb.conflist),
// a client pod on node 1, backends on nodes 2 and 3, every service in every
// node's store.
func TestClusterIP(t *testing.T) {
	topo := harness.New(t)
	n1, n2, n3 := topo.AddNode(t), topo.AddNode(t), topo.AddNode(t)
	harness.Mesh(t, n1, n2, n3)
	var chains []*harness.Chain
	for _, n := range topo.Nodes {
		chains = append(chains, n.Conflist(t, "native-lb.conflist", n.SockLB(t, nil)))
	}
	client := chains[0].AddPod(t, "client")
	b2 := serve(t, chains[1].AddPod(t, "b2"))
	b3 := serve(t, chains[2].AddPod(t, "b3"))
	plain := serve(t, chains[1].AddPod(t, "plain")) // serves, but is no service's backend
	services := []store.Service{
		service("web", vipWeb, store.TCP, b2.tcp, b3.tcp),
		service("dns", vipDNS, store.UDP, b2.udp, b3.udp),
		service("empty", vipEmpty, store.TCP),
	}
	for i, n := range topo.Nodes {
		apply(t, n, services...)
		chains[i].RequireSync(t)
	}
	p := n1.Probe(t, client.NS)

	t.Run("TCP spread over backends on two nodes", func(t *testing.T) {
		before := n1.Counters(t, plugin)
		const n = 300
		rs := do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb, N: n, StopOnError: true})
		got := harness.Tally(rs)
		// 150 expected each (sd 8.7): 75 is more than 8 sd away.
		if got["b2"] < n/4 || got["b3"] < n/4 || got["b2"]+got["b3"] != n {
			t.Errorf("%d connects to %s: %v, want each of b2, b3 >= %d and nothing else", n, vipWeb, got, n/4)
		}
		for _, r := range rs {
			if r.Peer != vipWeb {
				t.Fatalf("getpeername on a connection to %s: %s (answered by %s), want the VIP", vipWeb, r.Peer, r.Reply)
			}
		}
		if d := n1.Counters(t, plugin)[cntConnectLB] - before[cntConnectLB]; d != n {
			t.Errorf("node 1 counted %d balanced connects, want %d", d, n)
		}
		t.Logf("%d connects: %v", n, got)
	})

	t.Run("UDP replies come from the VIP", func(t *testing.T) {
		const n = 60
		rs := do(t, p, sockprobe.Request{Op: sockprobe.OpUDP, Dst: vipDNS, N: n, StopOnError: true})
		for _, r := range rs {
			if r.Err != "" || r.From != vipDNS {
				t.Fatalf("unconnected UDP to %s: %+v, want an answer from %s", vipDNS, r, vipDNS)
			}
		}
		// Each datagram of an unconnected socket picks anew: 60 on one
		// backend would be 2^-59.
		if got := harness.Tally(rs); got["b2"] == 0 || got["b3"] == 0 {
			t.Errorf("%d datagrams: %v, want both backends", n, got)
		}
		r := one(t, p, sockprobe.Request{Op: sockprobe.OpUDPConnected, Dst: vipDNS})
		if r.Err != "" || r.Peer != vipDNS || r.From != vipDNS {
			t.Errorf("connected UDP to %s: %+v, want peer and source %s", vipDNS, r, vipDNS)
		}
	})

	t.Run("IPv6 sockets to the v4-mapped VIP", func(t *testing.T) {
		// A dual-stack socket (Java's, .NET's default) names the VIP
		// ::ffff:a.b.c.d: balanced the same, the VIP shown back v4-mapped.
		const n = 40
		mv, md := mapped(vipWeb), mapped(vipDNS)
		before := n1.Counters(t, plugin)
		rs := do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb, N: n, Mapped: true, StopOnError: true})
		for _, r := range rs {
			if r.Err != "" || r.Peer != mv {
				t.Fatalf("AF_INET6 connect to %s: %+v, want a backend's answer, peer %s", mv, r, mv)
			}
		}
		if got := harness.Tally(rs); got["b2"] == 0 || got["b3"] == 0 {
			t.Errorf("%d AF_INET6 connects: %v, want both backends", n, got)
		}
		if d := n1.Counters(t, plugin)[cntMappedLB] - before[cntMappedLB]; d != n {
			t.Errorf("mapped_lb counted %d, want %d", d, n)
		}
		rs = do(t, p, sockprobe.Request{Op: sockprobe.OpUDP, Dst: vipDNS, N: n, Mapped: true, StopOnError: true})
		for _, r := range rs {
			if r.Err != "" || r.From != md {
				t.Fatalf("AF_INET6 sendto %s: %+v, want an answer from %s", md, r, md)
			}
		}
		r := one(t, p, sockprobe.Request{Op: sockprobe.OpUDPConnected, Dst: vipDNS, Mapped: true})
		if r.Err != "" || r.Peer != md || r.From != md {
			t.Errorf("connected AF_INET6 UDP to %s: %+v, want peer and source %s", md, r, md)
		}
	})

	t.Run("backends see the pod's address", func(t *testing.T) {
		// No NAT on the wire: the backend's peer is the client's socket.
		c := one(t, p, sockprobe.Request{Op: sockprobe.OpOpen, Dst: vipWeb})
		r := one(t, p, sockprobe.Request{Op: sockprobe.OpEcho, ID: c.ID, Payload: sockprobe.AskPeer})
		do(t, p, sockprobe.Request{Op: sockprobe.OpClose, ID: c.ID})
		if r.Err != "" || r.Reply != c.Local || netip.MustParseAddrPort(c.Local).Addr() != client.IP {
			t.Errorf("%s saw the client as %q (%s), want the pod's socket %s (%s)", c.Reply, r.Reply, r.Err, c.Local, client.IP)
		}
	})

	t.Run("service without backends refuses", func(t *testing.T) {
		before := n1.Counters(t, plugin)
		if r := one(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipEmpty}); r.Err != "ECONNREFUSED" {
			t.Errorf("connect to the empty %s: %+v, want ECONNREFUSED", vipEmpty, r)
		}
		if d := n1.Counters(t, plugin)[cntRefusedEmpty] - before[cntRefusedEmpty]; d != 1 {
			t.Errorf("refused_empty counted %d, want 1", d)
		}
	})

	t.Run("non-service address untouched", func(t *testing.T) {
		before := n1.Counters(t, plugin)
		r := one(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: plain.tcp.String()})
		if r.Err != "" || r.Reply != "plain" || r.Peer != plain.tcp.String() {
			t.Errorf("connect to the pod %s: %+v, want plain's answer, peer %s", plain.tcp, r, plain.tcp)
		}
		// The web VIP on a port no service has: left alone, and nothing
		// routes a VIP, so it fails.
		if r := one(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipNone}); r.Err == "" {
			t.Errorf("connect to %s (no service): %+v, want a failure", vipNone, r)
		} else {
			t.Logf("connect to %s (no service): %s", vipNone, r.Err)
		}
		after := n1.Counters(t, plugin)
		for _, i := range []int{cntConnectLB, cntSendmsgLB, cntRefusedEmpty, cntBackendMissing} {
			if after[i] != before[i] {
				t.Errorf("counter %d moved from %d to %d on connects to no service", i, before[i], after[i])
			}
		}
	})

	t.Run("removed backend: no new connections, established one kept", func(t *testing.T) {
		var held sockprobe.Result
		for range 64 { // 1 in 2 each: 2^-64 to miss
			held = one(t, p, sockprobe.Request{Op: sockprobe.OpOpen, Dst: vipWeb})
			if held.Reply == "b3" {
				break
			}
			do(t, p, sockprobe.Request{Op: sockprobe.OpClose, ID: held.ID})
		}
		if held.Reply != "b3" {
			t.Fatalf("no connection to b3 in 64 tries: last %+v", held)
		}
		n1.Braid(t, "service", "backends", "set", "web", "--backend", b2.tcp.String())
		chains[0].RequireSync(t)
		if got := harness.Tally(do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb, N: 100})); got["b2"] != 100 {
			t.Errorf("100 connects after b3's removal: %v, want all on b2", got)
		}
		r := one(t, p, sockprobe.Request{Op: sockprobe.OpEcho, ID: held.ID, Payload: "still here"})
		if r.Err != "" || r.Reply != "still here" {
			t.Errorf("the connection to b3 after b3's removal: %+v, want the echo", r)
		}
		do(t, p, sockprobe.Request{Op: sockprobe.OpClose, ID: held.ID})
		// Back to both.
		n1.Braid(t, "service", "backends", "set", "web", "--backend", b2.tcp.String()+","+b3.tcp.String())
		chains[0].RequireSync(t)
		if got := harness.Tally(do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb, N: 40})); got["b3"] == 0 || got["b2"]+got["b3"] != 40 {
			t.Errorf("40 connects after b3's return: %v, want b2 and b3", got)
		}
	})

	t.Run("10,000 services", func(t *testing.T) {
		var many []store.Service
		for i := range 10000 {
			many = append(many, service(fmt.Sprintf("s%05d", i),
				fmt.Sprintf("198.18.100.%d:%d", 100+i/250, 10000+i%250), store.TCP, b2.tcp, b3.tcp))
		}
		last := netip.AddrPortFrom(many[len(many)-1].VIP, many[len(many)-1].Port).String()
		file := writeJSON(t, many)
		start := time.Now()
		n1.Braid(t, "service", "apply", "-f", file)
		applied := time.Since(start)
		start = time.Now()
		out := chains[0].RequireSync(t)
		synced := time.Since(start)
		t.Logf("service apply -f (10,000): %v; braid sync: %v\n%s", applied, synced, out)
		// Minutes before the store checked a batch in one pass.
		if applied > 10*time.Second || synced > 20*time.Second {
			t.Errorf("apply took %v, sync %v: want seconds", applied, synced)
		}
		var listed []store.Service
		n1.BraidJSON(t, &listed, "service", "list")
		if len(listed) != len(services)+len(many) {
			t.Errorf("service list has %d services, want %d", len(listed), len(services)+len(many))
		}
		rs := do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: last, N: 10, StopOnError: true})
		for _, r := range rs {
			if r.Err != "" || r.Peer != last || (r.Reply != "b2" && r.Reply != "b3") {
				t.Fatalf("connect to the last service %s: %+v", last, r)
			}
		}
		if r := one(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb}); r.Err != "" {
			t.Errorf("connect to %s among 10,000 others: %+v", vipWeb, r)
		}
		// CHECK verifies every service's map entries.
		start = time.Now()
		if err := client.Check(); err != nil {
			t.Errorf("CHECK with 10,000 services: %v", err)
		}
		t.Logf("CHECK with 10,000 services: %v", time.Since(start))
	})
}
