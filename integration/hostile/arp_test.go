package hostile

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/packet"
	"github.com/vishvananda/netlink"
)

// TestForgedARP: a pod claims, by ARP, addresses that are not its own:
// another pod's, the node's, its gateway's, or its own address with another
// MAC. Each frame is dropped and counted at the pod's veth (drop_spoof_arp),
// and the node's neighbour entries for the victim are what they were. The
// pod's own ARP is let through.
func TestForgedARP(t *testing.T) {
	n := harness.New(t).AddNode(t)
	c := n.Conflist(t, "node-local.conflist")
	attacker, victim := c.AddPod(t, "attacker"), c.AddPod(t, "victim")
	if err := attacker.Ping(victim.IP); err != nil {
		t.Fatal(err)
	}
	_, gwMAC := attacker.HostIf()
	me, gw := packet.MAC(attacker.MAC()), packet.MAC(gwMAC)
	victimMAC := packet.MAC(victim.MAC())
	gateway := netip.MustParseAddr("169.254.1.1")
	arp := func(dst packet.MAC, op uint16, sha packet.MAC, spa netip.Addr, tha packet.MAC, tpa netip.Addr) []byte {
		return packet.Ethernet(dst, me, packet.EtherTypeARP, packet.ARP(op, sha, spa, tha, tpa))
	}
	neighBefore := neighbours(t, n, victim.IP)

	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"reply: the victim's address is at my MAC", arp(gw, packet.ARPReply, me, victim.IP, gw, gateway)},
		{"gratuitous ARP for the victim's address", arp(packet.Broadcast, packet.ARPRequest, me, victim.IP, packet.MAC{}, victim.IP)},
		{"gratuitous reply for the victim's address", arp(packet.Broadcast, packet.ARPReply, me, victim.IP, packet.Broadcast, victim.IP)},
		{"reply with the victim's address and MAC", arp(gw, packet.ARPReply, victimMAC, victim.IP, gw, gateway)},
		{"request from the node's address", arp(packet.Broadcast, packet.ARPRequest, me, n.IP, packet.MAC{}, victim.IP)},
		{"reply for the gateway's address", arp(gw, packet.ARPReply, me, gateway, gw, attacker.IP)},
		{"my address with the victim's MAC", arp(gw, packet.ARPReply, victimMAC, attacker.IP, gw, gateway)},
		{"an address nobody holds", arp(packet.Broadcast, packet.ARPRequest, me, netip.MustParseAddr("198.19.1.200"), packet.MAC{}, gateway)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := n.CounterSet(t, "veth-ebpf")
			if err := attacker.SendRaw(tc.frame); err != nil {
				t.Fatal(err)
			}
			if d := waitCounter(t, n, "veth-ebpf", before, "drop_spoof_arp", 1); d != 1 {
				t.Errorf("drop_spoof_arp rose by %d, want 1 (%s)", d, harness.FormatDeltas(n.CounterSet(t, "veth-ebpf").Since(before)))
			}
		})
	}
	t.Run("its own ARP passes", func(t *testing.T) {
		before := n.CounterSet(t, "veth-ebpf")
		if err := attacker.SendRaw(arp(packet.Broadcast, packet.ARPRequest, me, attacker.IP, packet.MAC{}, gateway)); err != nil {
			t.Fatal(err)
		}
		if d := waitCounter(t, n, "veth-ebpf", before, "pass_next", 1); d < 1 {
			t.Errorf("the pod's own ARP was not passed on: %s", harness.FormatDeltas(n.CounterSet(t, "veth-ebpf").Since(before)))
		}
	})

	if after := neighbours(t, n, victim.IP); !slices.Equal(after, neighBefore) {
		t.Errorf("the node's neighbour entries for %s changed:\nbefore %v\nafter  %v", victim.IP, neighBefore, after)
	}
	if len(neighBefore) != 1 {
		t.Errorf("neighbour entries for the victim %s: %v, want its one permanent entry", victim.IP, neighBefore)
	}
	if err := n.Ping(victim.IP); err != nil {
		t.Errorf("the node cannot reach the victim: %v", err)
	}
	if err := attacker.Ping(victim.IP); err != nil {
		t.Errorf("the attacker cannot reach the victim the honest way: %v", err)
	}
	endClean(t, []*harness.Node{n}, attacker, victim)
}

// neighbours lists the node's neighbour entries for ip, as
// "dev lladdr state".
func neighbours(t *testing.T, n *harness.Node, ip netip.Addr) []string {
	t.Helper()
	var out []string
	err := n.Do(func() error {
		list, err := netlink.NeighList(0, netlink.FAMILY_V4)
		for _, nb := range list {
			if a, ok := netip.AddrFromSlice(nb.IP.To4()); ok && a == ip {
				l, _ := netlink.LinkByIndex(nb.LinkIndex)
				name := fmt.Sprint(nb.LinkIndex)
				if l != nil {
					name = l.Attrs().Name
				}
				out = append(out, fmt.Sprintf("%s %s %#x", name, nb.HardwareAddr, nb.State))
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}
