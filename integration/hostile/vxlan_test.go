package hostile

import (
	"net/netip"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/packet"
)

// TestVXLANFromPod: a pod sends VXLAN datagrams to the tunnel port of its
// own node and of the other node, wrapping frames for a victim pod with
// inner sources the receiving node would believe (a pod of the sending
// node, a pod of its own, the node). The outer source is the pod's address,
// not a known node's: each datagram is dropped by from_overlay and counted
// as an unknown peer, and the victims receive nothing. An outer source
// forged to be a node's address never leaves the pod's veth.
func TestVXLANFromPod(t *testing.T) {
	cl := twoNodes(t, "vxlan.conflist")
	attacker, near := cl.c1.AddPod(t, "attacker"), cl.c1.AddPod(t, "near")
	far, farPeer := cl.c2.AddPod(t, "far"), cl.c2.AddPod(t, "farpeer")
	nearRx, nearAddr := listen(t, near)
	farRx, farAddr := listen(t, far)
	// The datagrams and the inner frames are well formed: only who sends
	// them is wrong.
	inner := func(src netip.Addr, dst netip.AddrPort) []byte {
		return packet.Ethernet(packet.MAC{0x02, 0xbd, 0, 0, 0, 1}, packet.MAC{0x02, 0xbd, 0, 0, 0, 2}, packet.EtherTypeIPv4,
			packet.IPv4Packet(src, dst.Addr(), packet.ProtoUDP, packet.UDP(src, dst.Addr(), 40000, dst.Port(), []byte("injected"))))
	}
	for _, tc := range []struct {
		name  string
		node  *harness.Node // whose tunnel port
		frame []byte
	}{
		{"to the other node, as the attacker", cl.n2, inner(attacker.IP, farAddr)},
		{"to the other node, as a pod of the other node", cl.n2, inner(farPeer.IP, farAddr)},
		{"to the other node, as the other node", cl.n2, inner(cl.n2.IP, farAddr)},
		{"to the other node, as this node", cl.n2, inner(cl.n1.IP, farAddr)},
		{"to its own node, as a pod of the other node", cl.n1, inner(farPeer.IP, nearAddr)},
		{"to its own node, as its own node", cl.n1, inner(cl.n1.IP, nearAddr)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rx := nearRx
			if tc.node == cl.n2 {
				rx = farRx
			}
			before := tc.node.CounterSet(t, "vxlan-tunnel")
			err := attacker.SendUDP(netip.AddrPortFrom(tc.node.IP, vxlanPort), packet.VXLAN(1, tc.frame))
			if err != nil {
				t.Fatal(err)
			}
			if d := waitCounter(t, tc.node, "vxlan-tunnel", before, "drop_unknown_peer", 1); d != 1 {
				t.Errorf("%s: drop_unknown_peer rose by %d, want 1 (%s)", tc.node.Name, d,
					harness.FormatDeltas(tc.node.CounterSet(t, "vxlan-tunnel").Since(before)))
			}
			requireSilent(t, rx, 300*time.Millisecond, tc.name)
		})
	}

	t.Run("outer source forged as the other node", func(t *testing.T) {
		before := cl.n1.CounterSet(t, "veth-ebpf")
		f := frameTo(attacker, netip.AddrPortFrom(cl.n1.IP, vxlanPort), packet.VXLAN(1, inner(farPeer.IP, nearAddr)))
		copy(f[14+12:14+16], cl.n2.IP.AsSlice())
		// The IPv4 checksum no longer matches; the datapath drops the
		// frame for its source before anything would look at it.
		if err := attacker.SendRaw(f); err != nil {
			t.Fatal(err)
		}
		if d := waitCounter(t, cl.n1, "veth-ebpf", before, "drop_spoof_ip", 1); d != 1 {
			t.Errorf("drop_spoof_ip rose by %d, want 1", d)
		}
		requireSilent(t, nearRx, 300*time.Millisecond, "forged outer source")
	})

	// Not a pod but a host on the underlay, which is not a node:
	// integration/vxlantunnel TestForgedVXLAN covers it at length; here
	// once, for the claim that only known node IPs are tunnel sources.
	t.Run("from an underlay host that is not a node", func(t *testing.T) {
		host := cl.topo.AddHost(t, "bf-vx", netip.MustParsePrefix("198.18.0.201/24"))
		before := cl.n1.CounterSet(t, "vxlan-tunnel")
		if err := host.SendUDP(netip.AddrPortFrom(cl.n1.IP, vxlanPort), packet.VXLAN(1, inner(farPeer.IP, nearAddr))); err != nil {
			t.Fatal(err)
		}
		if d := waitCounter(t, cl.n1, "vxlan-tunnel", before, "drop_unknown_peer", 1); d != 1 {
			t.Errorf("drop_unknown_peer rose by %d, want 1", d)
		}
		requireSilent(t, nearRx, 300*time.Millisecond, "VXLAN from an underlay host")
	})

	// The victims' sockets work: honest traffic arrives.
	for _, dst := range []netip.AddrPort{nearAddr, farAddr} {
		if err := attacker.SendUDP(dst, []byte("honest")); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := harness.ReadUDP(nearRx, 2*time.Second); err != nil || string(got) != "honest" {
		t.Errorf("near victim: %q, %v", got, err)
	}
	if got, err := harness.ReadUDP(farRx, 2*time.Second); err != nil || string(got) != "honest" {
		t.Errorf("far victim: %q, %v", got, err)
	}
	cl.endClean(t, attacker, near, far, farPeer)
}
