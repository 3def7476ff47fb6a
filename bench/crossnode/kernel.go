package main

import (
	"context"
	"fmt"
	"strings"
)

// The kernel paths braid's routing plugins are compared with, made with
// iproute2 the way flannel's backends program a node.

const (
	vxlanOverhead = 50 // outer Ethernet 14, IPv4 20, UDP 8, VXLAN 8
	vxlanPort     = "8472"
	flannelDevice = "flannel.1"
)

// vtepMAC is node n's VXLAN device MAC (flannel picks one at random and
// publishes it; fixed here, so each node knows the other's in advance).
func vtepMAC(n *node) string { return fmt.Sprintf("0e:00:c6:12:00:%02x", n.index) }

// vtepIP is the address flannel gives a node's VXLAN device: the network
// address of its pod CIDR, as a /32.
func vtepIP(n *node) string { return strings.TrimSuffix(n.podCIDR(), "/24") }

// flannelRoutes is flannel's vxlan backend on both nodes: a VXLAN device
// (VNI 1, port 8472, no learning) at underlay MTU − 50, and for the other
// node a static FDB entry (its VTEP MAC → its node IP), a permanent
// neighbour entry (its VTEP address → MAC) and a route to its pod CIDR via
// its VTEP address, onlink.
func flannelRoutes(ctx context.Context, a, b *node) error {
	for _, p := range [][2]*node{{a, b}, {b, a}} {
		n, peer := p[0], p[1]
		err := run(ctx, n.netns(),
			[]string{"ip", "link", "add", flannelDevice, "address", vtepMAC(n), "type", "vxlan", "id", "1",
				"local", n.ip(), "dev", nodeDevice, "dstport", vxlanPort, "nolearning"},
			[]string{"ip", "link", "set", flannelDevice, "mtu", fmt.Sprint(underlayMTU - vxlanOverhead), "up"},
			[]string{"ip", "addr", "add", vtepIP(n) + "/32", "dev", flannelDevice},
			[]string{"bridge", "fdb", "append", vtepMAC(peer), "dev", flannelDevice, "dst", peer.ip(), "self", "permanent"},
			[]string{"ip", "neigh", "replace", vtepIP(peer), "lladdr", vtepMAC(peer), "dev", flannelDevice, "nud", "permanent"},
			[]string{"ip", "route", "add", peer.podCIDR(), "via", vtepIP(peer), "dev", flannelDevice, "onlink"})
		if err != nil {
			return fmt.Errorf("flannel-style vxlan on %s: %w", n.name, err)
		}
	}
	return nil
}

// hostGWRoutes is flannel's host-gw backend: on each node a plain route to
// the other node's pod CIDR via its node IP.
func hostGWRoutes(ctx context.Context, a, b *node) error {
	for _, p := range [][2]*node{{a, b}, {b, a}} {
		n, peer := p[0], p[1]
		if err := run(ctx, n.netns(), []string{"ip", "route", "add", peer.podCIDR(), "via", peer.ip(), "dev", nodeDevice}); err != nil {
			return fmt.Errorf("host-gw-style routes on %s: %w", n.name, err)
		}
	}
	return nil
}
