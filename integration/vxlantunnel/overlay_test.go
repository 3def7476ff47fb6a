package vxlantunnel

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/integration/routing"
	"github.com/braid-cni/braid/internal/packet"
	"github.com/vishvananda/netlink"
)

// TestConfiguredPortVNIAndMTU: a non-default port and VNI are what goes on
// the wire, and the pod MTU follows the underlay's (1400 here): 1350.
func TestConfiguredPortVNIAndMTU(t *testing.T) {
	const port, vni, underlay = 9472, 42, 1400
	m := vxlanMode(port, vni)
	c := routing.NewCluster(t, m, 2, harness.PluginKeysFor(plugin, map[string]any{"vxlanPort": port, "vni": vni}))
	c.Topo.SetUnderlayMTU(t, underlay)
	n1, n2 := c.Nodes[0], c.Nodes[1]
	a, b := c.Chains[0].AddPod(t, "a"), c.Chains[1].AddPod(t, "b")

	for _, n := range c.Nodes {
		var vx *netlink.Vxlan
		err := n.Do(func() error {
			l, err := netlink.LinkByName(device)
			vx, _ = l.(*netlink.Vxlan)
			return err
		})
		if err != nil || vx == nil {
			t.Fatalf("%s: no VXLAN device %s (%v)", n.Name, device, err)
		}
		if !vx.FlowBased || vx.Port != port || vx.MTU != underlay-50 {
			t.Errorf("%s: %s has collect_md %v, port %d, mtu %d; want true, %d, %d", n.Name, device, vx.FlowBased, vx.Port, vx.MTU, port, underlay-50)
		}
	}
	capture := c.Topo.Underlay.StartCapture(t, n1.UnderlayPort(), "udp")
	routing.RequirePing(t, a, b)
	frames := capture.Stop(t)
	requireEncapsulated(t, frames, port, vni, a, b, n1, n2)
	for _, f := range frames {
		if f.Proto == packet.ProtoUDP && f.DstPort == defaultPort {
			t.Errorf("a datagram to the default port %d: %s", defaultPort, f)
		}
	}
	routing.RequireMTU(t, underlay-50, a, b)
	a.RequireTCP(t, b.NS, b.IP)
}

// TestForgedVXLAN sends VXLAN datagrams to node 2's overlay port by hand,
// each followed by a genuine one, so the first datagram the target pod
// receives tells whether the forged one got through. Only a known node may
// send, with the cluster's VNI, and only for its own pods (or itself).
func TestForgedVXLAN(t *testing.T) {
	c := routing.NewCluster(t, mode, 2)
	n1, n2 := c.Nodes[0], c.Nodes[1]
	target := c.Chains[1].AddPod(t, "target")
	c.Chains[0].AddPod(t, "a") // sets up n1's overlay, whose port is taken
	stranger := c.Topo.AddHost(t, "x", netip.MustParsePrefix("198.18.0.250/24"))

	// Resolve the underlay neighbours first: a forged datagram held back by
	// ARP would let the genuine one overtake it.
	for _, ns := range []*harness.NS{stranger.NS, n1.NS} {
		if err := ns.Ping(n2.IP); err != nil {
			t.Fatal(err)
		}
	}
	rx := target.ListenUDP(t, ":0")
	dst := netip.AddrPortFrom(target.IP, uint16(rx.LocalAddr().(*net.UDPAddr).Port))
	overlay := netip.AddrPortFrom(n2.IP, defaultPort)
	// datagram is a VXLAN datagram with vni carrying a UDP packet from
	// src to the target pod.
	datagram := func(vni uint32, src netip.Addr, payload string) []byte {
		h := packet.IPv4{Src: src, Dst: dst.Addr(), Proto: packet.ProtoUDP, TTL: 64}
		inner := packet.Ethernet(packet.MAC{0x02, 0xbd, 0, 0, 0, 2}, packet.MAC{0x02, 0xbd, 0, 0, 0, 1}, packet.EtherTypeIPv4,
			h.Marshal(packet.UDP(src, dst.Addr(), 40000, dst.Port(), []byte(payload))))
		return append(vxlanHeader(vni), inner...)
	}
	n1Pod := netip.MustParseAddr("198.19.1.77") // n1's pod CIDR, no pod needed
	genuine := datagram(defaultVNI, n1Pod, "genuine")

	for _, tc := range []struct {
		name    string
		from    *harness.NS
		forged  []byte
		counter string
	}{
		{"from an unknown host on the underlay", stranger.NS, datagram(defaultVNI, n1Pod, "forged"), "drop_unknown_peer"},
		{"inner source of another pod CIDR", n1.NS, datagram(defaultVNI, netip.MustParseAddr("198.19.3.5"), "forged"), "drop_spoofed_inner"},
		{"inner source of the receiver's own pods", n1.NS, datagram(defaultVNI, n2.PodCIDR.Addr().Next(), "forged"), "drop_spoofed_inner"},
		{"inner source outside any pod CIDR", n1.NS, datagram(defaultVNI, netip.MustParseAddr("198.18.1.10"), "forged"), "drop_spoofed_inner"},
		{"another VNI", n1.NS, datagram(7, n1Pod, "forged"), "drop_wrong_vni"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := n2.CounterSet(t, plugin)
			if err := tc.from.SendUDP(overlay, tc.forged); err != nil {
				t.Fatal(err)
			}
			if err := n1.SendUDP(overlay, genuine); err != nil {
				t.Fatal(err)
			}
			got, err := harness.ReadUDP(rx, 2*time.Second)
			if err != nil {
				t.Fatalf("the genuine datagram did not arrive: %v", err)
			}
			if string(got) != "genuine" {
				t.Fatalf("the target received %q first: the forged datagram was delivered", got)
			}
			d := n2.CounterSet(t, plugin).Since(before)
			if d[tc.counter] != 1 || d["decap_deliver"] != 1 {
				t.Errorf("%s counters moved %s, want %s+1 and decap_deliver+1 (the genuine one)", n2.Name, harness.FormatDeltas(d), tc.counter)
			}
		})
	}
}

// TestOverlayShrinks: the underlay's MTU drops under running pods. After
// `braid sync` the overlay is smaller than the pods' MTU: a DF packet of
// the pod's MTU must be refused with ICMP "fragmentation needed" carrying
// the overlay's new MTU (not sent in fragmented VXLAN), path MTU discovery
// must then work, and packets without DF still arrive. CHECK reports the
// pods whose MTU is too large; new pods get the new MTU.
func TestOverlayShrinks(t *testing.T) {
	c := routing.NewCluster(t, mode, 2)
	n1 := c.Nodes[0]
	a, b := c.Chains[0].AddPod(t, "a"), c.Chains[1].AddPod(t, "b")
	routing.RequireMTU(t, 1450, a, b)

	c.Topo.SetUnderlayMTU(t, 1400)
	for _, ch := range c.Chains {
		ch.RequireSync(t)
	}
	const overlay = 1350
	if got := n1.LinkMTU(t, device); got != overlay {
		t.Fatalf("%s MTU after sync: %d, want %d", device, got, overlay)
	}
	host, _ := a.HostIf()
	harness.RequireCNIError(t, a.Check(), 999, plugin, fmt.Sprintf("host interface %s has mtu 1450, more than the overlay's %d", host, overlay))

	before := n1.CounterSet(t, plugin)
	ans := a.Send(t, b.NS, b.IP, harness.Probe{Size: 1450, DF: true})
	if !ans.Error.FragNeeded() || ans.Error.Info != overlay {
		t.Errorf("DF packet of 1450 bytes into a %d-byte overlay: %s, want ICMP frag needed with mtu %d", overlay, ans, overlay)
	}
	if d := n1.CounterSet(t, plugin).Delta(t, before, "frag_needed"); d != 1 {
		t.Errorf("frag_needed rose by %d, want 1", d)
	}
	if got := a.PathMTU(t, b.IP); got != overlay {
		t.Errorf("%s's path MTU to %s after the ICMP: %d, want %d", a.Name, b.IP, got, overlay)
	}
	if ans := a.Send(t, b.NS, b.IP, harness.Probe{Size: overlay, DF: true}); !ans.Echoed {
		t.Errorf("DF packet of the overlay's MTU: %s, want it delivered", ans)
	}
	if ans := a.Send(t, b.NS, b.IP, harness.Probe{Size: 1450}); !ans.Echoed {
		t.Errorf("packet of 1450 bytes without DF: %s, want it delivered (in fragments)", ans)
	}
	routing.RequireBulkTCP(t, a, b, 1<<20)

	fresh := c.Chains[0].AddPod(t, "fresh")
	routing.RequireMTU(t, overlay, fresh, c.Chains[1].AddPod(t, "fresh2"))
}
