// Package nativeroute is the native-route plugin's integration suite: nodes
// as network namespaces on one underlay L2 segment, chain-configs/
// native.conflist through libcni, and real traffic between pods on
// different nodes with no encapsulation.
package nativeroute

import (
	"fmt"
	"strings"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/integration/routing"
	"github.com/braid-cni/braid/internal/packet"
	"github.com/vishvananda/netlink"
)

const plugin = "native-route"

var mode = routing.Mode{
	Name:           "native",
	Plugin:         plugin,
	Conflist:       "native.conflist",
	SendCounters:   []string{"fib_redirect", "fib_redirect_neigh"},
	ReceiveCounter: "netdev_deliver",
	Background:     []string{"netdev_pass"}, // from_netdev sees all the node's underlay traffic
	PodMTU:         func(underlay int) int { return underlay },
	Underlay:       requireBare,
	Knows:          knows,
	Breaks:         breaks,
}

// requireBare: the echo request and reply cross the underlay as they left
// the pods, pod address to pod address, and nothing is encapsulated.
func requireBare(t testing.TB, frames []*packet.Frame, from, to *harness.Pod, fromNode, toNode *harness.Node) {
	t.Helper()
	var request, reply bool
	for _, f := range frames {
		if f.IP == nil {
			continue
		}
		if f.Proto == packet.ProtoUDP && len(f.Payload) >= 8 && f.Payload[0] == 0x08 {
			if _, _, ok := harness.VXLANInner(f, f.DstPort); ok {
				t.Errorf("an encapsulated packet on the underlay: %s", f)
			}
		}
		if f.Proto != packet.ProtoICMP {
			continue
		}
		request = request || (f.Src == from.IP && f.Dst == to.IP)
		reply = reply || (f.Src == to.IP && f.Dst == from.IP)
	}
	if !request || !reply {
		var seen []string
		for _, f := range frames {
			seen = append(seen, f.String())
		}
		t.Errorf("want the echo request %s>%s and its reply bare on the underlay (request %v, reply %v); captured:\n%s",
			from.IP, to.IP, request, reply, strings.Join(seen, "\n"))
	}
}

// knows checks node's route to peer's pods (via peer's node IP, on the
// node device).
func knows(t testing.TB, node, peer *harness.Node, want bool) {
	t.Helper()
	routes := node.RoutesTo(t, peer.PodCIDR)
	wantRoute := fmt.Sprintf("%s via %s dev %s", peer.PodCIDR, peer.IP, harness.NodeDevice)
	if want && (len(routes) != 1 || routes[0] != wantRoute) {
		t.Errorf("%s: routes to %s's pods %v, want [%s]", node.Name, peer.Name, routes, wantRoute)
	}
	if !want && len(routes) > 0 {
		t.Errorf("%s keeps routes to %s's pods: %v", node.Name, peer.Name, routes)
	}
}

var devicePin = "dev-" + harness.NodeDevice + "_ingress"

// breaks: what CHECK must name on a node.
var breaks = []routing.Break{
	{
		Name: "node device pin",
		Apply: func(t testing.TB, n, _ *harness.Node, _ *harness.Pod) {
			n.RemovePin(t, plugin, "links", devicePin)
		},
		Want: func(n, _ *harness.Node, _ *harness.Pod) string {
			return "no link pinned at " + n.PinPath(plugin, "links", devicePin)
		},
	},
	{
		Name: "route to a peer",
		Apply: func(t testing.TB, n, peer *harness.Node, _ *harness.Pod) {
			err := n.Do(func() error {
				return netlink.RouteDel(&netlink.Route{Dst: prefixNet(peer), Gw: peer.IP.AsSlice(), Protocol: harness.RouteProtocol})
			})
			if err != nil {
				t.Fatal(err)
			}
		},
		Want: func(_, peer *harness.Node, _ *harness.Pod) string {
			return fmt.Sprintf("route %s via %s is missing", peer.PodCIDR, peer.IP)
		},
	},
}
