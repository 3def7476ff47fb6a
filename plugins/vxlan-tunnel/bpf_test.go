package main

// The vxlan-tunnel programs on crafted frames.
//
// BPF_PROG_TEST_RUN covers every decision that depends on the packet and
// the maps: from_container's encapsulation decision (tunnel key + redirect,
// or TCX_NEXT), its MTU check, to_overlay, and from_overlay without tunnel
// metadata. test_run cannot attach the tunnel metadata a VXLAN device gives
// a decapsulated packet, so from_overlay's checks on it (known node, VNI,
// inner source, delivery) run on a real collect_md VXLAN device in a private
// netns (TestFromOverlayOnDevice), fed with VXLAN datagrams over loopback.
// What neither can show - that the tunnel key sends the packet to the right
// node's IP and port, and that delivery reaches the pod - the integration
// suite (integration/vxlantunnel) checks with captures and traffic.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/internal/bpftest"
	"github.com/braid-cni/braid/internal/packet"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
)

var (
	thisNode = netip.MustParseAddr("198.18.0.1")
	node2    = netip.MustParseAddr("198.18.0.2")
	node3    = netip.MustParseAddr("198.18.0.3")
	cidr2    = netip.MustParsePrefix("198.19.2.0/24")
	cidr3    = netip.MustParsePrefix("198.19.3.0/24")

	localPod   = netip.MustParseAddr("198.19.1.5")
	noPod      = netip.MustParseAddr("198.19.1.99") // in this node's CIDR, no endpoint
	remotePod2 = netip.MustParseAddr("198.19.2.7")
	remotePod3 = netip.MustParseAddr("198.19.3.9")
	external   = netip.MustParseAddr("198.18.1.10")

	podMAC  = packet.MAC{0x02, 0, 0, 0, 0x01, 0x05}
	hostMAC = packet.MAC{0x02, 0, 0, 0, 0x01, 0xfe}
)

// overlayMTU is the stand-in VXLAN device's MTU: a 1500-byte underlay.
const overlayMTU = 1450

// localEndpoint is the endpoint map entry of localPod behind a host veth
// with the given ifindex.
func localEndpoint(ifindex int) maps.EndpointInfo {
	return maps.EndpointInfo{Ifindex: uint32(ifindex), ID: 1, PodMAC: podMAC, HostMAC: hostMAC}
}

// loadDP loads the programs with localPod in the endpoint map, the
// settings of node 198.18.0.1 (VNI 1, VXLAN device vxIfindex) and two
// peers: node2 owning 198.19.2.0/24, node3 owning 198.19.3.0/24.
func loadDP(t testing.TB, vxIfindex, podIfindex int) *vxlanTunnelObjects {
	t.Helper()
	spec, err := loadVxlanTunnel()
	if err != nil {
		t.Fatal(err)
	}
	eps := bpftest.Endpoints(t, map[[4]byte]maps.EndpointInfo{localPod.As4(): localEndpoint(podIfindex)})
	objs := &vxlanTunnelObjects{}
	bpftest.Load(t, spec, objs, map[string]*ebpf.Map{vxlanTunnelMapEndpoints: eps})
	setSettings(t, objs, vxIfindex)
	for _, p := range []struct {
		cidr netip.Prefix
		node netip.Addr
	}{{cidr2, node2}, {cidr3, node3}} {
		if err := objs.TunnelMap.Put(tunnelKey(p.cidr), vxlanTunnelTunnelEndpoint{NodeIp: maps.IPv4Word(p.node)}); err != nil {
			t.Fatal(err)
		}
		if err := objs.TunnelPeers.Put(maps.IPv4Word(p.node), uint32(0)); err != nil {
			t.Fatal(err)
		}
	}
	return objs
}

func setSettings(t testing.TB, objs *vxlanTunnelObjects, vxIfindex int) {
	t.Helper()
	conf := vxlanTunnelTunnelConf{VxlanIfindex: uint32(vxIfindex), Vni: 1, NodeIp: maps.IPv4Word(thisNode)}
	if err := objs.TunnelSettings.Put(uint32(0), conf); err != nil {
		t.Fatal(err)
	}
}

// vxlanDevice makes a collect_md VXLAN device on UDP port 8472 in ns, up,
// with the given MTU, and returns its ifindex.
func vxlanDevice(t testing.TB, ns *bpftest.Netns, name string, mtu int) int {
	t.Helper()
	var ifindex int
	ns.Must(t, func() error {
		vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}, FlowBased: true, Port: 8472}
		if err := netlink.LinkAdd(vx); err != nil {
			return fmt.Errorf("VXLAN device: %w", err)
		}
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		ifindex = l.Attrs().Index
		return netlink.LinkSetUp(l)
	})
	return ifindex
}

// podFrame is a UDP frame as a pod sends it: to its gateway's MAC, with
// TTL 64, DF, and an IPv4 packet of size bytes (at least 28).
func podFrame(src, dst netip.Addr, size int, df bool) []byte {
	h := packet.IPv4{Src: src, Dst: dst, Proto: packet.ProtoUDP, ID: 7}
	if df {
		h.Frag = 0x4000
	}
	return packet.Ethernet(hostMAC, podMAC, packet.EtherTypeIPv4,
		h.Marshal(packet.UDP(src, dst, 40000, 5201, make([]byte, size-28))))
}

func arpFrame() []byte {
	return packet.Ethernet(packet.Broadcast, podMAC, packet.EtherTypeARP,
		packet.ARP(packet.ARPRequest, podMAC, localPod, packet.MAC{}, remotePod2))
}

type progCase struct {
	name    string
	frame   []byte
	verdict uint32
	counter int // -1: no counter moves
}

// runner runs a program: bpftest.Run, or a Netns's Run.
type runner func(prog *ebpf.Program, frame []byte, ctx bpftest.SkbContext) (uint32, []byte, error)

// routed is frame as a router forwards it: TTL one less, header checksum
// fixed (what from_container does before it encapsulates).
func routed(frame []byte) []byte {
	out := bytes.Clone(frame)
	ttl := out[14+8]
	out[14+8]--
	// The checksum is updated incrementally (RFC 1624 eqn. 3), as the
	// kernel's csum_replace2 does: a checksum that was wrong stays wrong
	// by as much, rather than being recomputed.
	add := func(a, b uint16) uint16 { s := uint32(a) + uint32(b); return uint16(s + s>>16) }
	hc := binary.BigEndian.Uint16(out[14+10:])
	hc = ^add(add(^hc, ^(uint16(ttl)<<8)), uint16(ttl-1)<<8)
	binary.BigEndian.PutUint16(out[14+10:], hc)
	return out
}

// podFrameTTL is podFrame with the given TTL.
func podFrameTTL(src, dst netip.Addr, ttl uint8) []byte {
	h := packet.IPv4{Src: src, Dst: dst, Proto: packet.ProtoUDP, ID: 7, TTL: ttl, Frag: 0x4000}
	return packet.Ethernet(hostMAC, podMAC, packet.EtherTypeIPv4, h.Marshal(packet.UDP(src, dst, 40000, 5201, make([]byte, 72))))
}

// check runs every case on prog and checks the verdict, that the frame is
// left as it was (but for the TTL of one encapsulated), and that exactly
// the case's counter rose by one.
func check(t *testing.T, run runner, objs *vxlanTunnelObjects, prog *ebpf.Program, ctx bpftest.SkbContext, cases []progCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := bpftest.Counters(t, objs.Counters)
			verdict, out, err := run(prog, tc.frame, ctx)
			if err != nil {
				t.Fatal(err)
			}
			if verdict != tc.verdict {
				t.Errorf("verdict %s, want %s", bpftest.VerdictName(verdict), bpftest.VerdictName(tc.verdict))
			}
			want := tc.frame
			if tc.counter == cntEncap {
				want = routed(tc.frame)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("the frame out:\n% x\nwant\n% x", out, want)
			}
			moved := map[int]uint64{}
			if tc.counter >= 0 {
				moved[tc.counter] = 1
			}
			bpftest.RequireCounters(t, counterNames, before, bpftest.Counters(t, objs.Counters), moved)
		})
	}
}

// TestFromContainer: the encapsulation decision on a pod's host veth.
// Tunnel keys and redirects cannot be observed under test_run beyond the
// verdict; the MTU check uses a real VXLAN device's MTU.
func TestFromContainer(t *testing.T) {
	ns := bpftest.NewNetns(t)
	vx := vxlanDevice(t, ns, "vx0", overlayMTU)
	objs := loadDP(t, vx, 42)
	ctx := bpftest.SkbContext{Ifindex: 1, IngressIfindex: 1}
	check(t, ns.Run, objs, objs.FromContainer, ctx, []progCase{
		{"to a pod of node2: tunnel key, redirected", podFrame(localPod, remotePod2, 100, true), bpftest.Redirect, cntEncap},
		{"to a pod of node3: tunnel key, redirected", podFrame(localPod, remotePod3, 100, true), bpftest.Redirect, cntEncap},
		{"first address of a remote CIDR", podFrame(localPod, cidr2.Addr(), 100, true), bpftest.Redirect, cntEncap},
		{"to a pod of this node: next", podFrame(localPod, localPod.Next(), 100, true), bpftest.Next, cntPassNext},
		{"to a peer's node IP: next (not a pod CIDR)", podFrame(localPod, node2, 100, true), bpftest.Next, cntPassNext},
		{"to an external address: next", podFrame(localPod, external, 100, true), bpftest.Next, cntPassNext},
		{"just outside a remote CIDR: next", podFrame(localPod, netip.MustParseAddr("198.19.4.0"), 100, true), bpftest.Next, cntPassNext},
		{"ARP: next", arpFrame(), bpftest.Next, cntPassNext},
		{"IPv6: next", packet.Ethernet(hostMAC, podMAC, packet.EtherTypeIPv6, make([]byte, 40)), bpftest.Next, cntPassNext},
		{"the overlay's MTU with DF: redirected", podFrame(localPod, remotePod2, overlayMTU, true), bpftest.Redirect, cntEncap},
		{"one byte more with DF: to the stack (ICMP frag needed)", podFrame(localPod, remotePod2, overlayMTU+1, true), bpftest.Next, cntFragNeeded},
		{"one byte more without DF: to the stack (fragments)", podFrame(localPod, remotePod2, overlayMTU+1, false), bpftest.Next, cntFragNeeded},
		{"TTL 2: redirected with TTL 1", podFrameTTL(localPod, remotePod2, 2), bpftest.Redirect, cntEncap},
		{"TTL 1: to the stack (time exceeded)", podFrameTTL(localPod, remotePod2, 1), bpftest.Next, cntTTLExpired},
		{"VLAN tag in the frame: dropped",
			packet.Ethernet(hostMAC, podMAC, 0x8100, append([]byte{0, 7, 8, 0}, podFrame(localPod, remotePod2, 100, true)[14:]...)),
			bpftest.Shot, cntDropVLAN},
	})

	t.Run("tunnel map entry removed: next at once", func(t *testing.T) {
		frame := podFrame(localPod, remotePod2, 100, true)
		if err := objs.TunnelMap.Delete(tunnelKey(cidr2)); err != nil {
			t.Fatal(err)
		}
		if v, _, _ := ns.Run(objs.FromContainer, frame, ctx); v != bpftest.Next {
			t.Errorf("verdict %s, want TCX_NEXT", bpftest.VerdictName(v))
		}
	})
	t.Run("not configured: next", func(t *testing.T) {
		setSettings(t, objs, 0)
		check(t, ns.Run, objs, objs.FromContainer, ctx, []progCase{
			{"to a remote pod", podFrame(localPod, remotePod3, 100, true), bpftest.Next, cntPassNext},
		})
	})
}

// TestLongestPrefix: a more specific remote CIDR wins over a covering one
// (the map is an LPM trie); both redirect, and removing the specific entry
// leaves the covering one in force.
func TestLongestPrefix(t *testing.T) {
	objs := loadDP(t, 1, 42)
	wide := netip.MustParsePrefix("198.19.0.0/16")
	if err := objs.TunnelMap.Put(tunnelKey(wide), vxlanTunnelTunnelEndpoint{NodeIp: maps.IPv4Word(node3)}); err != nil {
		t.Fatal(err)
	}
	var te vxlanTunnelTunnelEndpoint
	if err := objs.TunnelMap.Lookup(vxlanTunnelTunnelKey{Prefixlen: 32, Ip4: maps.IPv4Word(remotePod2)}, &te); err != nil ||
		maps.WordIPv4(te.NodeIp) != node2 {
		t.Errorf("lookup of %s: %v (%v), want node2", remotePod2, maps.WordIPv4(te.NodeIp), err)
	}
	if err := objs.TunnelMap.Delete(tunnelKey(cidr2)); err != nil {
		t.Fatal(err)
	}
	ctx := bpftest.SkbContext{Ifindex: 1}
	if v, _, _ := bpftest.Run(objs.FromContainer, podFrame(localPod, remotePod2, 100, true), ctx); v != bpftest.Redirect {
		t.Errorf("covered by %s only: %s, want TC_ACT_REDIRECT", wide, bpftest.VerdictName(v))
	}
}

// TestToOverlay: what the node's stack routes into the VXLAN device gets
// its key, or is dropped: a collect_md device cannot send without one.
func TestToOverlay(t *testing.T) {
	objs := loadDP(t, 1, 42)
	ctx := bpftest.SkbContext{Ifindex: 1}
	node := func(dst netip.Addr) []byte { return podFrame(thisNode, dst, 100, true) }
	check(t, bpftest.Run, objs, objs.ToOverlay, ctx, []progCase{
		{"node to a remote pod: key set, next", node(remotePod2), bpftest.Next, -1},
		{"pod to a remote pod through the stack: key set, next", podFrame(localPod, remotePod3, 100, false), bpftest.Next, -1},
		{"to no remote CIDR: dropped", node(external), bpftest.Shot, cntDropNoKey},
		{"ARP: dropped", arpFrame(), bpftest.Shot, cntDropNoKey},
	})
	setSettings(t, objs, 0)
	check(t, bpftest.Run, objs, objs.ToOverlay, ctx, []progCase{
		{"not configured: dropped", node(remotePod2), bpftest.Shot, cntNotConfigured},
	})
}

// TestFromOverlayWithoutKey: test_run gives no tunnel metadata, which is
// what a packet that did not come out of a VXLAN device looks like.
func TestFromOverlayWithoutKey(t *testing.T) {
	objs := loadDP(t, 1, 42)
	ctx := bpftest.SkbContext{Ifindex: 1}
	check(t, bpftest.Run, objs, objs.FromOverlay, ctx, []progCase{
		{"no tunnel key: dropped", podFrame(remotePod2, localPod, 100, true), bpftest.Shot, cntDropNoKey},
	})
	setSettings(t, objs, 0)
	check(t, bpftest.Run, objs, objs.FromOverlay, ctx, []progCase{
		{"not configured: dropped", podFrame(remotePod2, localPod, 100, true), bpftest.Shot, cntNotConfigured},
	})
}

// TestFromOverlayOnDevice feeds VXLAN datagrams to a real collect_md
// device over loopback: the outer source 127.0.0.1 plays a known node that
// owns 198.19.2.0/24, 127.0.0.2 an unknown one. The packets are not looked
// at after the program (redirect_peer needs a pod netns); each case checks
// which counter rose.
func TestFromOverlayOnDevice(t *testing.T) {
	ns := bpftest.NewNetns(t)
	vx := vxlanDevice(t, ns, "vx0", overlayMTU)
	var hostIfindex int
	ns.Must(t, func() error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "host0"}, PeerName: "pod0"}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		host, err := netlink.LinkByName("host0")
		hostIfindex = host.Attrs().Index
		return err
	})
	objs := loadDP(t, vx, hostIfindex)
	knownNode := netip.MustParseAddr("127.0.0.1")
	if err := objs.TunnelMap.Put(tunnelKey(cidr2), vxlanTunnelTunnelEndpoint{NodeIp: maps.IPv4Word(knownNode)}); err != nil {
		t.Fatal(err)
	}
	if err := objs.TunnelPeers.Put(maps.IPv4Word(knownNode), uint32(0)); err != nil {
		t.Fatal(err)
	}
	ns.Must(t, func() error {
		l, err := link.AttachTCX(link.TCXOptions{Interface: vx, Program: objs.FromOverlay, Attach: ebpf.AttachTCXIngress})
		if err == nil {
			t.Cleanup(func() { l.Close() })
		}
		return err
	})

	inner := func(src, dst netip.Addr, ttl uint8) []byte {
		h := packet.IPv4{Src: src, Dst: dst, Proto: packet.ProtoUDP, TTL: ttl, Frag: 0x4000}
		// The sending node's pod addressed it to its own host veth.
		return packet.Ethernet(packet.MAC{0x02, 0, 0, 0, 0x02, 0xfe}, packet.MAC{0x02, 0, 0, 0, 0x02, 0x07},
			packet.EtherTypeIPv4, h.Marshal(packet.UDP(src, dst, 40000, 5201, []byte("braid"))))
	}
	for _, tc := range []struct {
		name    string
		from    netip.Addr
		vni     uint32
		frame   []byte
		counter int
	}{
		{"known node, its pod, to a local pod: delivered", knownNode, 1, inner(remotePod2, localPod, 64), cntDecapDeliver},
		{"known node itself to a local pod: delivered", knownNode, 1, inner(knownNode, localPod, 64), cntDecapDeliver},
		{"to no local pod: to the stack", knownNode, 1, inner(remotePod2, noPod, 64), cntDecapToStack},
		{"TTL 1 to a local pod: to the stack (time exceeded)", knownNode, 1, inner(remotePod2, localPod, 1), cntDecapToStack},
		{"inner source of another node's CIDR: dropped", knownNode, 1, inner(remotePod3, localPod, 64), cntDropSpoofedInner},
		{"inner source in no pod CIDR: dropped", knownNode, 1, inner(external, localPod, 64), cntDropSpoofedInner},
		{"inner source is this node's own pod: dropped", knownNode, 1, inner(localPod.Next(), localPod, 64), cntDropSpoofedInner},
		{"wrong VNI: dropped", knownNode, 2, inner(remotePod2, localPod, 64), cntDropWrongVNI},
		{"unknown outer source: dropped", netip.MustParseAddr("127.0.0.2"), 1, inner(remotePod2, localPod, 64), cntDropUnknownPeer},
		{"inner ARP: dropped as malformed", knownNode, 1, packet.Ethernet(packet.Broadcast, packet.MAC{0x02, 0, 0, 0, 0x02, 0x07},
			packet.EtherTypeARP, packet.ARP(packet.ARPRequest, packet.MAC{0x02, 0, 0, 0, 0x02, 0x07}, remotePod2, packet.MAC{}, localPod)), cntDropMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := bpftest.Counters(t, objs.Counters)
			sendVXLAN(t, ns, tc.from, tc.vni, tc.frame)
			after := waitCounters(t, objs.Counters, before)
			bpftest.RequireCounters(t, counterNames, before, after, map[int]uint64{tc.counter: 1})
		})
	}
}

// sendVXLAN sends frame in a VXLAN datagram with vni from src to
// 127.0.0.1:8472 inside ns.
func sendVXLAN(t testing.TB, ns *bpftest.Netns, src netip.Addr, vni uint32, frame []byte) {
	t.Helper()
	hdr := binary.BigEndian.AppendUint32([]byte{0x08, 0, 0, 0}, vni<<8)
	ns.Must(t, func() error {
		c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
			net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:8472")))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(append(hdr, frame...))
		return err
	})
}

// waitCounters waits up to a second for the counters to move from before.
func waitCounters(t testing.TB, m *ebpf.Map, before []uint64) []uint64 {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		after := bpftest.Counters(t, m)
		if !equal(after, before) || time.Now().After(deadline) {
			// Anything else in flight would have arrived by now too.
			time.Sleep(20 * time.Millisecond)
			return bpftest.Counters(t, m)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
