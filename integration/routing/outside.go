package routing

import (
	"net/netip"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/packet"
)

// clusterPods is every node's pod CIDR in the harness (198.19.<i>.0/24).
var clusterPods = netip.MustParsePrefix("198.19.0.0/16")

// OutsideCluster: pods reach a host outside the cluster through the node's
// netfilter. The host (harness.AddClient: on the underlay, on another
// subnet, with no route to pod CIDRs) can only answer a pod whose packets
// the node masquerades, as a node does for the internet or a metadata
// service; so the routing plugin must leave packets for anything but
// another node's pod CIDR to the stack rather than redirect them past it.
// A pod on node 1 reaches the host over TCP and UDP, and the host sees node
// 1's address; traffic to a pod on node 2 still takes the fast path
// meanwhile; and a frame to link-local multicast (224.0.0.251, TTL 64,
// which the node's default route would match) never leaves the node.
func OutsideCluster(t *testing.T, mode Mode) {
	c := NewCluster(t, mode, 2)
	n1 := c.Nodes[0]
	a, b := c.Chains[0].AddPod(t, "a"), c.Chains[1].AddPod(t, "b")
	host := c.Topo.AddClient(t, 1)
	// The node's way out: MASQUERADE for pod traffic leaving the cluster's
	// pod CIDRs, and a default route via the outside host.
	for _, args := range [][]string{
		{"iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", n1.PodCIDR.String(), "!", "-d", clusterPods.String(), "-j", "MASQUERADE"},
		{"ip", "route", "add", "default", "via", host.IP.String(), "dev", harness.NodeDevice},
	} {
		harness.RequireRoot(t, args[0])
		if out, err := n1.Run(args[0], args[1:]...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	RequirePing(t, a, b) // the routing plugin's datapath is up on both nodes
	before := c.Counters(t, n1)

	if seen := a.RequireTCP(t, host.NS, host.IP); seen.Addr() != n1.IP {
		t.Errorf("TCP: the outside host saw %s, want the node's address %s (masqueraded)", seen, n1.IP)
	}
	if seen := a.RequireUDP(t, host.NS, host.IP); seen.Addr() != n1.IP {
		t.Errorf("UDP: the outside host saw %s, want the node's address %s (masqueraded)", seen, n1.IP)
	}

	fastBefore := c.Counters(t, n1)
	RequirePing(t, a, b)
	var fast uint64
	for _, name := range mode.SendCounters {
		fast += c.Counters(t, n1).Delta(t, fastBefore, name)
	}
	if fast == 0 {
		t.Errorf("a pod on another node: no fast-path counter of %v rose (%s)", mode.SendCounters,
			harness.FormatDeltas(c.Counters(t, n1).Since(fastBefore)))
	}

	mcast := netip.MustParseAddr("224.0.0.251")
	capture := c.Topo.Underlay.StartCapture(t, n1.UnderlayPort(), "dst host "+mcast.String())
	h := packet.IPv4{Src: a.IP, Dst: mcast, Proto: packet.ProtoUDP, TTL: 64}
	frame := packet.Ethernet(packet.MAC{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb}, packet.MAC(a.MAC()), packet.EtherTypeIPv4,
		h.Marshal(packet.UDP(a.IP, mcast, 5353, 5353, []byte("mdns"))))
	const mcastFrames = 5
	for range mcastFrames {
		if err := a.SendRaw(frame); err != nil {
			t.Fatal(err)
		}
	}
	if got := capture.Stop(t); len(got) > 0 {
		t.Errorf("%d link-local multicast frames from the pod left node 1: %s", len(got), got[0])
	}
	t.Logf("FIGURE outside the cluster (%s): TCP and UDP from a pod to a host outside the cluster masqueraded by the node; "+
		"%d link-local multicast frames sent, none on the underlay; %s counted %s",
		mode.Name, mcastFrames, mode.Plugin, harness.FormatDeltas(c.Counters(t, n1).Since(before)))
}
