// Package vxlantunnel is the vxlan-tunnel plugin's integration suite: nodes
// as network namespaces on an underlay bridge, chain-configs/vxlan.conflist
// through libcni, and real traffic between pods on different nodes.
package vxlantunnel

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/integration/routing"
	"github.com/braid-cni/braid/internal/packet"
	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
)

const (
	plugin      = "vxlan-tunnel"
	device      = "braid_vxlan"
	defaultPort = 8472
	defaultVNI  = 1
)

// mode is vxlan-tunnel on the default port and VNI.
var mode = vxlanMode(defaultPort, defaultVNI)

func vxlanMode(port uint16, vni uint32) routing.Mode {
	return routing.Mode{
		Name:           "vxlan",
		Plugin:         plugin,
		Conflist:       "vxlan.conflist",
		SendCounters:   []string{"encap"},
		ReceiveCounter: "decap_deliver",
		PodMTU:         func(underlay int) int { return underlay - 50 },
		Underlay: func(t testing.TB, frames []*packet.Frame, from, to *harness.Pod, fromNode, toNode *harness.Node) {
			requireEncapsulated(t, frames, port, vni, from, to, fromNode, toNode)
		},
		Knows:  knows,
		Breaks: breaks,
	}
}

// requireEncapsulated: the echo request and reply between the pods cross
// the underlay in VXLAN between the node IPs, on port and VNI, and never
// with bare pod addresses.
func requireEncapsulated(t testing.TB, frames []*packet.Frame, port uint16, vni uint32, from, to *harness.Pod, fromNode, toNode *harness.Node) {
	t.Helper()
	var request, reply bool
	for _, f := range frames {
		if f.IP == nil {
			continue
		}
		if f.Src == from.IP || f.Dst == from.IP || f.Src == to.IP || f.Dst == to.IP {
			t.Errorf("a pod address on the underlay, not encapsulated: %s", f)
		}
		inner, gotVNI, ok := harness.VXLANInner(f, port)
		if !ok || inner.Proto != packet.ProtoICMP {
			continue
		}
		if gotVNI != vni {
			t.Errorf("VXLAN with VNI %d, want %d: %s", gotVNI, vni, f)
		}
		switch {
		case f.Src == fromNode.IP && f.Dst == toNode.IP && inner.Src == from.IP && inner.Dst == to.IP:
			request = true
		case f.Src == toNode.IP && f.Dst == fromNode.IP && inner.Src == to.IP && inner.Dst == from.IP:
			reply = true
		}
	}
	if !request || !reply {
		var seen []string
		for _, f := range frames {
			seen = append(seen, f.String())
		}
		t.Errorf("want the echo request %s>%s in VXLAN %s>%s:%d and its reply (request %v, reply %v); captured:\n%s",
			from.IP, to.IP, fromNode.IP, toNode.IP, port, request, reply, strings.Join(seen, "\n"))
	}
}

// tunnelEntry is an entry of the pinned tunnel_map (LPM: pod CIDR -> node).
type tunnelEntry struct {
	Prefixlen uint32
	CIDR      [4]byte // network order
	NodeIP    [4]byte // network order
}

// tunnelState reads node's pinned tunnel_map and tunnel_peers.
func tunnelState(t testing.TB, node *harness.Node) (entries []tunnelEntry, peers [][4]byte) {
	t.Helper()
	open := func(name string) *ebpf.Map {
		m, err := ebpf.LoadPinnedMap(node.PinPath(plugin, name), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tm := open("tunnel_map")
	defer tm.Close()
	var k struct {
		Prefixlen uint32
		IP        [4]byte
	}
	var v struct {
		NodeIP [4]byte
		Flags  uint32
	}
	it := tm.Iterate()
	for it.Next(&k, &v) {
		entries = append(entries, tunnelEntry{k.Prefixlen, k.IP, v.NodeIP})
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	pm := open("tunnel_peers")
	defer pm.Close()
	var ip [4]byte
	var zero uint32
	pit := pm.Iterate()
	for pit.Next(&ip, &zero) {
		peers = append(peers, ip)
	}
	if err := pit.Err(); err != nil {
		t.Fatal(err)
	}
	return entries, peers
}

// knows checks node's tunnel map, known nodes, overlay route and FDB
// for peer.
func knows(t testing.TB, node, peer *harness.Node, want bool) {
	t.Helper()
	entries, peers := tunnelState(t, node)
	var entry, anyEntry, known bool
	for _, e := range entries {
		if e.NodeIP == peer.IP.As4() {
			anyEntry = true
			entry = entry || (e.Prefixlen == uint32(peer.PodCIDR.Bits()) && e.CIDR == peer.PodCIDR.Addr().As4())
		}
	}
	for _, p := range peers {
		known = known || p == peer.IP.As4()
	}
	routes := node.RoutesTo(t, peer.PodCIDR)
	var fdb []string
	for _, l := range node.FDB(t, device) {
		if strings.Contains(l, peer.IP.String()) {
			fdb = append(fdb, l)
		}
	}
	if want {
		if !entry || !known || len(routes) != 1 || !strings.HasSuffix(routes[0], "dev "+device) {
			t.Errorf("%s does not know %s: tunnel map entry %v, known node %v, routes %v", node.Name, peer.Name, entry, known, routes)
		}
		return
	}
	if anyEntry || known || len(routes) > 0 || len(fdb) > 0 {
		t.Errorf("%s keeps state for %s: tunnel map entry %v, known node %v, routes %v, FDB %v", node.Name, peer.Name, anyEntry, known, routes, fdb)
	}
}

// breaks: what CHECK must name on a node.
var breaks = []routing.Break{
	{
		Name: "tunnel map entry",
		Apply: func(t testing.TB, n, peer *harness.Node, _ *harness.Pod) {
			m, err := ebpf.LoadPinnedMap(n.PinPath(plugin, "tunnel_map"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			key := struct {
				Prefixlen uint32
				IP        [4]byte
			}{uint32(peer.PodCIDR.Bits()), peer.PodCIDR.Addr().As4()}
			if err := m.Delete(key); err != nil {
				t.Fatal(err)
			}
		},
		Want: func(_, peer *harness.Node, _ *harness.Pod) string {
			return fmt.Sprintf("tunnel map has no entry %s -> %s for node %s", peer.PodCIDR, peer.IP, peer.Name)
		},
	},
	{
		Name: "device ingress pin",
		Apply: func(t testing.TB, n, _ *harness.Node, _ *harness.Pod) {
			n.RemovePin(t, plugin, "links", "dev-"+device+"_ingress")
		},
		Want: func(n, _ *harness.Node, _ *harness.Pod) string {
			return "no link pinned at " + n.PinPath(plugin, "links", "dev-"+device+"_ingress")
		},
	},
	{
		Name: "device egress pin",
		Apply: func(t testing.TB, n, _ *harness.Node, _ *harness.Pod) {
			n.RemovePin(t, plugin, "links", "dev-"+device+"_egress")
		},
		Want: func(n, _ *harness.Node, _ *harness.Pod) string {
			return "no link pinned at " + n.PinPath(plugin, "links", "dev-"+device+"_egress")
		},
	},
	{
		Name: "device deleted",
		Apply: func(t testing.TB, n, _ *harness.Node, _ *harness.Pod) {
			err := n.Do(func() error {
				l, err := netlink.LinkByName(device)
				if err != nil {
					return err
				}
				return netlink.LinkDel(l)
			})
			if err != nil {
				t.Fatal(err)
			}
		},
		Want: func(*harness.Node, *harness.Node, *harness.Pod) string {
			return "VXLAN device " + device + " is missing"
		},
	},
	{
		Name: "device mtu",
		Apply: func(t testing.TB, n, _ *harness.Node, _ *harness.Pod) {
			n.SetLinkMTU(t, device, 1400)
		},
		Want: func(*harness.Node, *harness.Node, *harness.Pod) string {
			return fmt.Sprintf("%s is not a collect_md VXLAN device on port %d with mtu 1450", device, defaultPort)
		},
	},
}

// vxlanHeader is the 8-byte VXLAN header with the I flag and vni.
func vxlanHeader(vni uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{0x08, 0, 0, 0}, vni<<8)
}
