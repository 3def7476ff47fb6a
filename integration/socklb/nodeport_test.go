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

// mapped is vipPort as an IPv6 socket names it: [::ffff:a.b.c.d]:port.
func mapped(vipPort string) string {
	ap := netip.MustParseAddrPort(vipPort)
	return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port()).String()
}

// nodePortService is service with a node port; policy Local must not keep
// in-cluster clients from a backend on another node.
func nodePortService(name, vipPort, proto string, nodePort uint16, backends ...netip.AddrPort) store.Service {
	s := service(name, vipPort, proto, backends...)
	s.Type, s.NodePort, s.ExternalTrafficPolicy = store.NodePort, nodePort, "Local"
	return s
}

// TestNodePort: a pod and the node itself (its host netns) reach
// <this node's IP>:<nodePort> and <the other node's IP>:<nodePort>, with the
// backend on the same node and on the other, over TCP and UDP, in both
// chains: sock-lb translates the node port at the socket, so the connection
// goes to the backend as pod traffic and the peer shown is the node
// address. externalTrafficPolicy Local (with the backend on the other node
// only) does not apply to these in-cluster clients.
func TestNodePort(t *testing.T) {
	for _, file := range []string{"native-lb.conflist", "vxlan-lb.conflist"} {
		t.Run(file, func(t *testing.T) { testNodePort(t, file) })
	}
}

func testNodePort(t *testing.T, file string) {
	topo := harness.New(t)
	n1, n2 := topo.AddNode(t), topo.AddNode(t)
	harness.Mesh(t, n1, n2)
	c1 := n1.Conflist(t, file, n1.SockLB(t, nil))
	c2 := n2.Conflist(t, file, n2.SockLB(t, nil))
	client := c1.AddPod(t, "client")
	local := serve(t, c1.AddPod(t, "local"))
	remote := serve(t, c2.AddPod(t, "remote"))
	backends := map[string]backend{"local": local, "remote": remote}
	ports := map[string]map[string]uint16{ // backend -> protocol -> node port
		"local":  {store.TCP: 30080, store.UDP: 30053},
		"remote": {store.TCP: 30081, store.UDP: 30054},
	}
	services := []store.Service{
		nodePortService("np-local", "198.18.100.20:80", store.TCP, 30080, local.tcp),
		nodePortService("np-local-u", "198.18.100.20:53", store.UDP, 30053, local.udp),
		nodePortService("np-remote", "198.18.100.21:80", store.TCP, 30081, remote.tcp),
		nodePortService("np-remote-u", "198.18.100.21:53", store.UDP, 30054, remote.udp),
	}
	for i, n := range topo.Nodes {
		apply(t, n, services...)
		[]*harness.Chain{c1, c2}[i].RequireSync(t)
	}
	clients := map[string]*sockprobe.Probe{"pod": n1.Probe(t, client.NS), "node": n1.Probe(t, n1.NS)}

	before := n1.Counters(t, plugin)
	want := uint64(0)
	for who, p := range clients {
		for _, ip := range []netip.Addr{n1.IP, n2.IP} {
			for name := range backends {
				tcp := netip.AddrPortFrom(ip, ports[name][store.TCP]).String()
				udp := netip.AddrPortFrom(ip, ports[name][store.UDP]).String()
				rs := do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: tcp, N: 5})
				for _, r := range rs {
					if r.Err != "" || r.Reply != name || r.Peer != tcp {
						t.Errorf("%s: TCP to %s (backend %s): %+v, want %s's answer, peer %s", who, tcp, name, r, name, tcp)
					}
				}
				if r := one(t, p, sockprobe.Request{Op: sockprobe.OpUDP, Dst: udp}); r.Err != "" || r.Reply != name || r.From != udp {
					t.Errorf("%s: UDP to %s (backend %s): %+v, want %s's answer from %s", who, udp, name, r, name, udp)
				}
				want += 6
			}
		}
	}
	if d := n1.Counters(t, plugin)[cntNodePortLB] - before[cntNodePortLB]; d != want {
		t.Errorf("node 1 counted %d node port translations, want %d", d, want)
	}
	if err := client.Check(); err != nil {
		t.Errorf("CHECK: %v", err)
	}
}

// TestAffinity: with affinityTimeout, 50 connects from one pod all land on
// one of three backends (on two nodes); without, they spread; once the
// timeout has passed with no connect, the next one picks anew.
func TestAffinity(t *testing.T) {
	topo := harness.New(t)
	n1, n2 := topo.AddNode(t), topo.AddNode(t)
	harness.Mesh(t, n1, n2)
	c1 := n1.Conflist(t, "native-lb.conflist", n1.SockLB(t, nil))
	c2 := n2.Conflist(t, "native-lb.conflist", n2.SockLB(t, nil))
	client := c1.AddPod(t, "client")
	a := serve(t, c1.AddPod(t, "a"))
	b := serve(t, c2.AddPod(t, "b"))
	c := serve(t, c2.AddPod(t, "c"))
	const timeout = 2
	apply(t, n1, service("plain", "198.18.100.31:80", store.TCP, a.tcp, b.tcp, c.tcp))
	n1.Braid(t, "service", "add", "sticky", "--vip", "198.18.100.30", "--port", "80", "--affinity-timeout", fmt.Sprint(timeout),
		"--backend", a.tcp.String()+","+b.tcp.String()+","+c.tcp.String())
	c1.RequireSync(t)
	p := n1.Probe(t, client.NS)

	const n = 50
	before := n1.Counters(t, plugin)
	got := harness.Tally(do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: "198.18.100.30:80", N: n, StopOnError: true}))
	if len(got) != 1 {
		t.Errorf("%d connects with affinity: %v, want all on one backend", n, got)
	}
	if d := n1.Counters(t, plugin)[cntAffinityHit] - before[cntAffinityHit]; d != n-1 {
		t.Errorf("affinity_hit counted %d, want %d", d, n-1)
	}
	// Without affinity, 50 on one of 3 backends is 3^-49.
	spread := harness.Tally(do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: "198.18.100.31:80", N: n, StopOnError: true}))
	if len(spread) < 2 {
		t.Errorf("%d connects without affinity: %v, want more than one backend", n, spread)
	}
	t.Logf("with affinity %v, without %v", got, spread)

	time.Sleep(timeout*time.Second + 300*time.Millisecond)
	mid := n1.Counters(t, plugin)
	r := one(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: "198.18.100.30:80"})
	if r.Err != "" {
		t.Errorf("connect after the timeout: %+v", r)
	}
	if d := n1.Counters(t, plugin)[cntAffinityHit] - mid[cntAffinityHit]; d != 0 {
		t.Errorf("a connect %v after the last one (timeout %ds) kept its backend by affinity", timeout*time.Second+300*time.Millisecond, timeout)
	}
	if err := client.Check(); err != nil {
		t.Errorf("CHECK: %v", err)
	}
}
