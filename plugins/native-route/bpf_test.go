package main

// The native-route programs on crafted frames with BPF_PROG_TEST_RUN.
//
// from_container's decisions come from bpf_fib_lookup, which under test_run
// consults the routes, neighbours and sysctls of the caller's network
// namespace: each test builds a small node in a private one (a node device
// on 198.18.0.0/24 with a route to a remote pod CIDR via a peer, another
// device, a pod's host veth) and runs the program there. test_run does not
// carry out redirects, so where the packet goes is checked by the verdict,
// the counters and the rewritten frame (MACs, TTL, checksum); the
// integration suite (integration/nativeroute) sends real traffic.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/internal/bpftest"
	"github.com/braid-cni/braid/internal/packet"
	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
)

var (
	thisNode  = netip.MustParseAddr("198.18.0.1")
	peerNode  = netip.MustParseAddr("198.18.0.2")
	peerCIDR  = netip.MustParsePrefix("198.19.2.0/24")
	otherCIDR = netip.MustParsePrefix("198.19.4.0/24") // routed out of another device

	localPod  = netip.MustParseAddr("198.19.1.5")
	noPod     = netip.MustParseAddr("198.19.1.99") // in this node's CIDR, no endpoint
	remotePod = netip.MustParseAddr("198.19.2.7")
	unrouted  = netip.MustParseAddr("198.19.9.9")

	podMAC  = packet.MAC{0x02, 0, 0, 0, 0x01, 0x05}
	hostMAC = packet.MAC{0x02, 0, 0, 0, 0x01, 0xfe}
	peerMAC = packet.MAC{0x02, 0, 0, 0, 0x00, 0x02} // the peer node's underlay MAC
	devMAC  = packet.MAC{0x02, 0, 0, 0, 0x00, 0x01} // this node's device
)

// deviceMTU is the node device's MTU in the test node.
const deviceMTU = 1400

// testNode is a node in a private netns: devices and the loaded programs.
type testNode struct {
	ns                   *bpftest.Netns
	objs                 *nativeRouteObjects
	dev, hostVeth, other int // ifindexes: node device, a pod's host veth, another device
}

// newTestNode builds the node: eth0 (198.18.0.1/24, MTU 1400, MAC devMAC)
// with a route to 198.19.2.0/24 via 198.18.0.2, other0 with a route to
// 198.19.4.0/24, host0 (a pod's host veth), forwarding on; and the
// programs with localPod behind host0 and eth0 as the node device.
func newTestNode(t testing.TB) *testNode {
	t.Helper()
	n := &testNode{ns: bpftest.NewNetns(t)}
	n.ns.Sysctl(t, "net/ipv4/ip_forward", "1")
	n.ns.Must(t, func() error {
		var err error
		if n.dev, err = vethUp("eth0", net.HardwareAddr(devMAC[:]), deviceMTU); err != nil {
			return err
		}
		if n.hostVeth, err = vethUp("host0", net.HardwareAddr(hostMAC[:]), 1500); err != nil {
			return err
		}
		if n.other, err = vethUp("other0", nil, 1500); err != nil {
			return err
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: thisNode.AsSlice(), Mask: net.CIDRMask(24, 32)}}
		if err := netlink.AddrAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: n.dev}}, addr); err != nil {
			return fmt.Errorf("address: %w", err)
		}
		for _, r := range []netlink.Route{
			{LinkIndex: n.dev, Dst: prefixNet(peerCIDR), Gw: peerNode.AsSlice()},
			{LinkIndex: n.other, Dst: prefixNet(otherCIDR), Scope: netlink.SCOPE_LINK},
		} {
			if err := netlink.RouteAdd(&r); err != nil {
				return fmt.Errorf("route %s: %w", r.Dst, err)
			}
		}
		return nil
	})
	spec, err := loadNativeRoute()
	if err != nil {
		t.Fatal(err)
	}
	eps := bpftest.Endpoints(t, map[[4]byte]maps.EndpointInfo{
		localPod.As4(): {Ifindex: uint32(n.hostVeth), ID: 1, PodMAC: podMAC, HostMAC: hostMAC},
	})
	n.objs = &nativeRouteObjects{}
	bpftest.Load(t, spec, n.objs, map[string]*ebpf.Map{nativeRouteMapEndpoints: eps})
	n.configure(t, n.dev)
	// What Reconcile writes for the peer (and, to reach the device check,
	// for the CIDR routed out of another device).
	for cidr, via := range map[netip.Prefix]netip.Addr{peerCIDR: peerNode, otherCIDR: peerNode} {
		k := nativeRoutePeerKey{Prefixlen: uint32(cidr.Bits()), Ip4: maps.IPv4Word(cidr.Addr())}
		if err := n.objs.NativePeers.Put(k, maps.IPv4Word(via)); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func (n *testNode) configure(t testing.TB, dev int) {
	t.Helper()
	if err := n.objs.NativeSettings.Put(uint32(0), nativeRouteNativeConf{DeviceIfindex: uint32(dev)}); err != nil {
		t.Fatal(err)
	}
}

// vethUp makes a veth pair name/name+"p" with the given MAC (nil: random)
// and MTU, both ends up, and returns name's ifindex.
func vethUp(name string, mac net.HardwareAddr, mtu int) (int, error) {
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: mac, MTU: mtu}, PeerName: name + "p"}
	if err := netlink.LinkAdd(v); err != nil {
		return 0, fmt.Errorf("veth %s: %w", name, err)
	}
	for _, n := range []string{name, name + "p"} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			return 0, err
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return 0, err
		}
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return 0, err
	}
	return l.Attrs().Index, nil
}

// resolvePeer adds a permanent neighbour entry for the peer node.
func (n *testNode) resolvePeer(t testing.TB) {
	t.Helper()
	n.ns.Must(t, func() error {
		return netlink.NeighAdd(&netlink.Neigh{LinkIndex: n.dev, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: peerNode.AsSlice(), HardwareAddr: net.HardwareAddr(peerMAC[:])})
	})
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// frame is a UDP frame from dstMAC/srcMAC with an IPv4 packet of size
// bytes (at least 28), DF set, with the given TTL.
func frame(dstMAC, srcMAC packet.MAC, src, dst netip.Addr, ttl uint8, size int) []byte {
	h := packet.IPv4{Src: src, Dst: dst, Proto: packet.ProtoUDP, TTL: ttl, ID: 9, Frag: 0x4000}
	return packet.Ethernet(dstMAC, srcMAC, packet.EtherTypeIPv4, h.Marshal(packet.UDP(src, dst, 40000, 5201, make([]byte, size-28))))
}

// fromPod is what a pod sends to dst through its gateway (the host veth).
func fromPod(dst netip.Addr, ttl uint8, size int) []byte {
	return frame(hostMAC, podMAC, localPod, dst, ttl, size)
}

// forwarded is f after a router's rewrite: new MACs, TTL one less,
// header checksum recomputed.
func forwarded(dstMAC, srcMAC packet.MAC, src, dst netip.Addr, ttl uint8, size int) []byte {
	return frame(dstMAC, srcMAC, src, dst, ttl-1, size)
}

func arp() []byte {
	return packet.Ethernet(packet.Broadcast, podMAC, packet.EtherTypeARP,
		packet.ARP(packet.ARPRequest, podMAC, localPod, packet.MAC{}, remotePod))
}

type progCase struct {
	name    string
	frame   []byte
	verdict uint32
	counter int
	out     []byte // the frame the program must leave; nil: unchanged
}

// check runs every case in the node's netns and checks verdict, output
// frame (and that an IPv4 header it leaves verifies) and that exactly the
// case's counter rose by one.
func (n *testNode) check(t *testing.T, prog *ebpf.Program, ctx bpftest.SkbContext, cases []progCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := bpftest.Counters(t, n.objs.Counters)
			verdict, out, err := n.ns.Run(prog, tc.frame, ctx)
			if err != nil {
				t.Fatal(err)
			}
			if verdict != tc.verdict {
				t.Errorf("verdict %s, want %s", bpftest.VerdictName(verdict), bpftest.VerdictName(tc.verdict))
			}
			want := tc.out
			if want == nil {
				want = tc.frame
			}
			if !bytes.Equal(out, want) {
				t.Errorf("frame out:\n% x\nwant:\n% x", out, want)
			}
			if f, err := packet.Parse(out); err == nil && f.IP != nil && !f.IPChecksumOK() {
				t.Errorf("IPv4 header checksum of the frame out does not verify: % x", f.IP)
			}
			bpftest.RequireCounters(t, counterNames, before, bpftest.Counters(t, n.objs.Counters), map[int]uint64{tc.counter: 1})
		})
	}
}

// TestFromContainer: pod egress on its host veth, after veth-ebpf.
func TestFromContainer(t *testing.T) {
	n := newTestNode(t)
	ctx := bpftest.SkbContext{Ifindex: uint32(n.hostVeth), IngressIfindex: uint32(n.hostVeth)}
	// Before the peer's MAC is known: bpf_redirect_neigh resolves it.
	n.check(t, n.objs.FromContainer, ctx, []progCase{
		{name: "to a remote pod, next hop unresolved: redirect_neigh, TTL decremented",
			frame: fromPod(remotePod, 64, 100), verdict: bpftest.Redirect, counter: cntFIBRedirectNeigh,
			out: forwarded(hostMAC, podMAC, localPod, remotePod, 64, 100)},
	})
	n.resolvePeer(t)
	n.check(t, n.objs.FromContainer, ctx, fromContainerCases())

	t.Run("forwarding off on the pod's veth: to the stack", func(t *testing.T) {
		n.ns.Sysctl(t, "net/ipv4/conf/host0/forwarding", "0")
		defer n.ns.Sysctl(t, "net/ipv4/conf/host0/forwarding", "1")
		n.check(t, n.objs.FromContainer, ctx, []progCase{
			{name: "to a remote pod", frame: fromPod(remotePod, 64, 100), verdict: bpftest.Next, counter: cntFIBToStack},
		})
	})
	t.Run("not configured: next", func(t *testing.T) {
		n.configure(t, 0)
		defer n.configure(t, n.dev)
		n.check(t, n.objs.FromContainer, ctx, []progCase{
			{name: "to a remote pod", frame: fromPod(remotePod, 64, 100), verdict: bpftest.Next, counter: cntPassNext},
		})
	})
}

// fromContainerCases are the cases once the peer's MAC is resolved.
func fromContainerCases() []progCase {
	return []progCase{
		{name: "to a remote pod: redirect, MACs of the next hop, TTL decremented",
			frame: fromPod(remotePod, 64, 100), verdict: bpftest.Redirect, counter: cntFIBRedirect,
			out: forwarded(peerMAC, devMAC, localPod, remotePod, 64, 100)},
		{name: "TTL 2: forwarded with TTL 1",
			frame: fromPod(remotePod, 2, 100), verdict: bpftest.Redirect, counter: cntFIBRedirect,
			out: forwarded(peerMAC, devMAC, localPod, remotePod, 2, 100)},
		{name: "the device's MTU: forwarded",
			frame: fromPod(remotePod, 64, deviceMTU), verdict: bpftest.Redirect, counter: cntFIBRedirect,
			out: forwarded(peerMAC, devMAC, localPod, remotePod, 64, deviceMTU)},
		{name: "one byte over the MTU: to the stack (ICMP frag needed)",
			frame: fromPod(remotePod, 64, deviceMTU+1), verdict: bpftest.Next, counter: cntFIBToStack},
		{name: "TTL 1: to the stack (time exceeded)", frame: fromPod(remotePod, 1, 100), verdict: bpftest.Next, counter: cntPassNext},
		{name: "to the node: to the stack", frame: fromPod(thisNode, 64, 100), verdict: bpftest.Next, counter: cntNotPeer},
		// Only pod CIDRs skip the stack: its netfilter (MASQUERADE, DNAT)
		// must see the rest.
		{name: "to the peer node itself: to the stack", frame: fromPod(peerNode, 64, 100), verdict: bpftest.Next, counter: cntNotPeer},
		{name: "to an address outside the cluster: to the stack",
			frame: fromPod(netip.MustParseAddr("198.18.7.7"), 64, 100), verdict: bpftest.Next, counter: cntNotPeer},
		{name: "to link-local multicast: to the stack",
			frame: fromPod(netip.MustParseAddr("224.0.0.251"), 64, 100), verdict: bpftest.Next, counter: cntNotPeer},
		{name: "no route: to the stack", frame: fromPod(unrouted, 64, 100), verdict: bpftest.Next, counter: cntNotPeer},
		{name: "VLAN tag in the frame: dropped",
			frame:   packet.Ethernet(hostMAC, podMAC, 0x8100, append([]byte{0, 7, 8, 0}, fromPod(remotePod, 64, 100)[14:]...)),
			verdict: bpftest.Shot, counter: cntDropVLAN},
		{name: "routed out of another device: to the stack",
			frame: fromPod(otherCIDR.Addr().Next(), 64, 100), verdict: bpftest.Next, counter: cntFIBToStack},
		{name: "ARP: next", frame: arp(), verdict: bpftest.Next, counter: cntPassNext},
		{name: "IPv6: next", frame: packet.Ethernet(hostMAC, podMAC, packet.EtherTypeIPv6, make([]byte, 40)),
			verdict: bpftest.Next, counter: cntPassNext},
	}
}

// TestFromNetdev: arrivals on the node device.
func TestFromNetdev(t *testing.T) {
	n := newTestNode(t)
	ctx := bpftest.SkbContext{Ifindex: uint32(n.dev), IngressIfindex: uint32(n.dev)}
	in := func(dst netip.Addr, ttl uint8) []byte { return frame(devMAC, peerMAC, remotePod, dst, ttl, 100) }
	n.check(t, n.objs.FromNetdev, ctx, []progCase{
		{name: "to a local pod: redirect_peer with its MACs, TTL decremented",
			frame: in(localPod, 64), verdict: bpftest.Redirect, counter: cntNetdevDeliver,
			out: forwarded(podMAC, hostMAC, remotePod, localPod, 64, 100)},
		{name: "TTL 2 to a local pod: delivered with TTL 1",
			frame: in(localPod, 2), verdict: bpftest.Redirect, counter: cntNetdevDeliver,
			out: forwarded(podMAC, hostMAC, remotePod, localPod, 2, 100)},
		{name: "TTL 1 to a local pod: to the stack (time exceeded)", frame: in(localPod, 1), verdict: bpftest.Next, counter: cntNetdevPass},
		{name: "to no local pod: next", frame: in(noPod, 64), verdict: bpftest.Next, counter: cntNetdevPass},
		{name: "to the node: next", frame: in(thisNode, 64), verdict: bpftest.Next, counter: cntNetdevPass},
		{name: "ARP: next", frame: packet.Ethernet(packet.Broadcast, peerMAC, packet.EtherTypeARP,
			packet.ARP(packet.ARPRequest, peerMAC, peerNode, packet.MAC{}, thisNode)), verdict: bpftest.Next, counter: cntNetdevPass},
		{name: "Ethernet padding after the packet: delivered with it",
			frame: append(in(localPod, 64), make([]byte, 10)...), verdict: bpftest.Redirect, counter: cntNetdevDeliver,
			out: append(forwarded(podMAC, hostMAC, remotePod, localPod, 64, 100), make([]byte, 10)...)},
	})
	// A header that lies about its lengths, to a local pod or not: the
	// stack would drop it, and delivery would skip the stack's checks.
	var lies []progCase
	for _, dst := range []netip.Addr{localPod, thisNode} {
		for _, l := range []struct {
			name string
			edit func(ip []byte)
		}{
			{"IHL 15, total length 40: options beyond the packet", func(ip []byte) {
				ip[0] = 0x4f
				binary.BigEndian.PutUint16(ip[2:], 40)
			}},
			{"IHL 3", func(ip []byte) { ip[0] = 0x43 }},
			{"version 6", func(ip []byte) { ip[0] = 0x65 }},
			{"total length one byte beyond the frame", func(ip []byte) { binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+1)) }},
			{"total length 65535", func(ip []byte) { binary.BigEndian.PutUint16(ip[2:], 0xffff) }},
			{"total length shorter than the header", func(ip []byte) { binary.BigEndian.PutUint16(ip[2:], 12) }},
			{"total length 0 (no GSO)", func(ip []byte) { binary.BigEndian.PutUint16(ip[2:], 0) }},
		} {
			lies = append(lies, progCase{name: fmt.Sprintf("to %s, %s: dropped", dst, l.name),
				frame: lying(in(dst, 64), l.edit), verdict: bpftest.Shot, counter: cntDropNetdevMalformed})
		}
	}
	n.check(t, n.objs.FromNetdev, ctx, lies)
}

// lying is frame with its IPv4 header edited, the header checksum
// recomputed so that only the lie is wrong.
func lying(frame []byte, edit func(ip []byte)) []byte {
	f := bytes.Clone(frame)
	ip := f[14:]
	edit(ip)
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint16(ip[10:], packet.Checksum(ip[:20]))
	return f
}
