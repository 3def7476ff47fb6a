package k8sstore

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/braid-cni/braid/core/datastore"
	"github.com/braid-cni/braid/core/store"
	corev1 "k8s.io/api/core/v1"
)

// Nodes is the node part of a view: this node, the peers, and why this
// node cannot be applied yet (NotReady) or which Nodes are unusable.
type Nodes struct {
	Self  store.Node
	Peers []store.Peer
	// NotReady, when not empty, says why this node has no identity yet
	// (no Node object, no spec.podCIDR yet, no address): no view is
	// applied until it has one.
	NotReady string
	Problems []string
}

// NodeView translates the Node objects: the one called self.Name is this
// node (its IP is self.NodeIP when set, else its InternalIP; self.Device is
// kept), every other with an IPv4 pod CIDR and an IPv4 InternalIP a peer.
// A Node with no pod CIDR yet is no peer and no problem (nothing can run
// there); one with a CIDR braid cannot use is a problem.
func NodeView(nodes []*corev1.Node, self store.Node) Nodes {
	var out Nodes
	found := false
	for _, n := range nodes {
		if n.Name == self.Name {
			found = true
			out.Self, out.NotReady = selfNode(n, self)
			continue
		}
		cidr, ok, err := podCIDRv4(n)
		if !ok {
			continue
		}
		ip, hasIP := internalIPv4(n)
		switch {
		case err != nil:
			out.Problems = append(out.Problems, fmt.Sprintf("node %s: %v", n.Name, err))
		case !hasIP:
			out.Problems = append(out.Problems, fmt.Sprintf("node %s: no IPv4 InternalIP in status.addresses", n.Name))
		default:
			out.Peers = append(out.Peers, store.Peer{Name: n.Name, NodeIP: ip, PodCIDR: cidr})
		}
	}
	if !found {
		out.Self, out.NotReady = self, fmt.Sprintf("no Node %q in the API server (the kubelet registers it)", self.Name)
	}
	store.SortPeers(out.Peers)
	slices.Sort(out.Problems)
	return out
}

// selfNode is this node from its Node object, or why it cannot be yet.
func selfNode(n *corev1.Node, want store.Node) (store.Node, string) {
	out := want
	cidr, ok, err := podCIDRv4(n)
	switch {
	case err != nil:
		return out, fmt.Sprintf("node %s: %v", n.Name, err)
	case !ok:
		return out, fmt.Sprintf("node %s has no IPv4 spec.podCIDR yet (kube-controller-manager --allocate-node-cidrs assigns it)", n.Name)
	}
	out.PodCIDR = cidr
	if !out.NodeIP.IsValid() {
		ip, ok := internalIPv4(n)
		if !ok {
			return out, fmt.Sprintf("node %s has no IPv4 InternalIP in status.addresses (or give --node-ip)", n.Name)
		}
		out.NodeIP = ip
	}
	return out, ""
}

// podCIDRv4 is the Node's IPv4 pod CIDR: the IPv4 one of spec.podCIDRs
// (dual-stack has two), else spec.podCIDR. ok is false when it has none;
// err says why one it has is unusable.
func podCIDRv4(n *corev1.Node) (netip.Prefix, bool, error) {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, true, fmt.Errorf("pod CIDR %q is not a CIDR", s)
		}
		if !p.Addr().Is4() {
			continue
		}
		if p != p.Masked() {
			return p, true, fmt.Errorf("pod CIDR %s has host bits set", s)
		}
		return p, true, nil
	}
	return netip.Prefix{}, false, nil
}

// internalIPv4 is the Node's first IPv4 InternalIP.
func internalIPv4(n *corev1.Node) (netip.Addr, bool) {
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// nodeReady: the Node's Ready condition is True.
func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// nodeInfos is every Node as `braid node list` shows it.
func nodeInfos(nodes []*corev1.Node, self string) []datastore.NodeInfo {
	out := make([]datastore.NodeInfo, 0, len(nodes))
	for _, n := range nodes {
		info := datastore.NodeInfo{Name: n.Name, Self: n.Name == self, Up: nodeReady(n)}
		if cidr, ok, err := podCIDRv4(n); ok && err == nil {
			info.PodCIDR = cidr
		}
		info.NodeIP, _ = internalIPv4(n)
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b datastore.NodeInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}
