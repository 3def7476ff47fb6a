package dsr

// Tunnels are authenticated before anything reads them (issue 11, item 3):
// a pod or a host on the underlay that is not a node sends VXLAN to a
// node's tunnel port, or a plain datagram, "from" a backend into a live
// flow. Nothing reaches the client or the backend; dsr counts each.

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/packet"
)

// udpFlow is a client's UDP socket with one exchange through a node port
// done: the backend saw it as peer.
type udpFlow struct {
	conn *net.UDPConn
	peer netip.AddrPort // the client address the backend saw
	src  netip.AddrPort // the client's own
}

func openUDPFlow(t *testing.T, h *harness.Host, svc netip.AddrPort) *udpFlow {
	t.Helper()
	var conn *net.UDPConn
	if err := h.Do(func() (err error) {
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(h.IP, 0)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.WriteToUDPAddrPort([]byte("hello"), svc); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	n, from, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("the flow's first exchange: %v", err)
	}
	a, err := parseAnswer(buf[:n], from)
	if err != nil {
		t.Fatal(err)
	}
	return &udpFlow{conn: conn, peer: a.peer, src: conn.LocalAddr().(*net.UDPAddr).AddrPort()}
}

// received is what the flow's socket gets within d.
func (f *udpFlow) received(d time.Duration) []string {
	var out []string
	buf := make([]byte, 256)
	_ = f.conn.SetReadDeadline(time.Now().Add(d))
	for {
		n, from, err := f.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return out
		}
		out = append(out, from.String()+" "+string(buf[:n]))
	}
}

// vxlanTo wraps an inner IPv4 packet for node's VXLAN device (VNI 1, the
// conflist's) as a tunnel datagram's payload.
func vxlanTo(t *testing.T, n *harness.Node, ipPacket []byte) []byte {
	t.Helper()
	mac := packet.MAC(n.LinkMAC(t, "braid_vxlan"))
	inner := packet.Ethernet(mac, packet.MAC{0x02, 0xee, 0, 0, 0, 1}, packet.EtherTypeIPv4, ipPacket)
	return packet.VXLAN(1, inner)
}

// sendUDP sends payload from ns to dst with an ordinary socket.
func sendUDP(t *testing.T, ns *harness.NS, dst netip.AddrPort, payload []byte) {
	t.Helper()
	if err := ns.SendUDP(dst, payload); err != nil {
		t.Fatal(err)
	}
}

func TestTunnelInjection(t *testing.T) {
	t.Parallel()
	// mode snat: a reply "from" the backend to node 1's SNAT port would
	// be turned towards the client.
	t.Run("snat", func(t *testing.T) {
		t.Parallel()
		c := newCluster(t, vxlanConflist, dsrKeys(map[string]any{"mode": "snat"}))
		web := c.backend(t, 2, "web")
		evilPod := c.chain(1).AddPod(t, "evil")
		host := c.topo.AddHost(t, "x", netip.MustParsePrefix("198.18.0.250/24"))
		const np = 30080
		c.nodePort(t, "web", []string{"udp"}, np, "", web)
		n1 := c.node(1)
		flow := openUDPFlow(t, c.client, netip.AddrPortFrom(n1.IP, np))
		if flow.peer.Addr() != n1.IP {
			t.Fatalf("the backend saw %s, want node 1 (SNAT)", flow.peer)
		}
		forged := packet.IPv4Packet(web.IP, n1.IP, packet.ProtoUDP,
			packet.UDP(web.IP, n1.IP, backendPort, flow.peer.Port(), []byte("injected")))
		tunnel := netip.AddrPortFrom(n1.IP, vxlanPort)
		before := n1.CounterSet(t, "dsr")

		sendUDP(t, evilPod.NS, tunnel, vxlanTo(t, n1, forged)) // from a pod of node 1
		sendUDP(t, host.NS, tunnel, vxlanTo(t, n1, forged))    // from a host that is no node
		plain := packet.Ethernet(c.nodeMAC(t, 1), packet.MAC(host.LinkMAC(t, harness.NodeDevice)), packet.EtherTypeIPv4, forged)
		if err := host.SendRaw(harness.NodeDevice, plain); err != nil { // no tunnel at all
			t.Fatal(err)
		}
		if got := flow.received(time.Second); len(got) > 0 {
			t.Errorf("the client received %q: an injected reply was delivered", got)
		}
		after := n1.CounterSet(t, "dsr")
		t.Logf("node 1's dsr counters: %s", harness.FormatDeltas(after.Since(before)))
		if d := after.Delta(t, before, "drop_tunnel"); d != 3 {
			t.Errorf("drop_tunnel rose by %d, want 3 (two tunnels, one plain datagram)", d)
		}
		if d := after.Delta(t, before, "snat_reply"); d != 0 {
			t.Errorf("snat_reply rose by %d: an injected reply was translated", d)
		}
	})
	// mode dsr: a datagram "from" the client into the live flow at the
	// backend's node would be delivered to the backend as the client's.
	t.Run("dsr", func(t *testing.T) {
		t.Parallel()
		c := newCluster(t, vxlanConflist)
		web := c.backend(t, 2, "web")
		evilPod := c.chain(2).AddPod(t, "evil")
		host := c.topo.AddHost(t, "x", netip.MustParsePrefix("198.18.0.250/24"))
		const np = 30080
		c.nodePort(t, "web", []string{"udp"}, np, "", web)
		n2 := c.node(2)
		flow := openUDPFlow(t, c.client, netip.AddrPortFrom(c.node(1).IP, np))
		if flow.peer != flow.src {
			t.Fatalf("the backend saw %s, want the client %s (DSR)", flow.peer, flow.src)
		}
		forged := packet.IPv4Packet(flow.src.Addr(), web.IP, packet.ProtoUDP,
			packet.UDP(flow.src.Addr(), web.IP, flow.src.Port(), backendPort, []byte("injected")))
		tunnel := netip.AddrPortFrom(n2.IP, vxlanPort)
		before := n2.CounterSet(t, "dsr")

		sendUDP(t, evilPod.NS, tunnel, vxlanTo(t, n2, forged))
		sendUDP(t, host.NS, tunnel, vxlanTo(t, n2, forged))
		// The backend answers every datagram it gets: an answer means one
		// was delivered.
		if got := flow.received(time.Second); len(got) > 0 {
			t.Errorf("the client received %q: an injected datagram reached the backend", got)
		}
		after := n2.CounterSet(t, "dsr")
		t.Logf("node 2's dsr counters: %s", harness.FormatDeltas(after.Since(before)))
		if d := after.Delta(t, before, "drop_tunnel"); d != 2 {
			t.Errorf("drop_tunnel rose by %d, want 2", d)
		}
	})
}
