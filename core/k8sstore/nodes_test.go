package k8sstore

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/braid-cni/braid/core/store"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(name string, cidrs []string, ip string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	n.Spec.PodCIDRs = cidrs
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
	}
	if ip != "" {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}
	}
	return n
}

func TestNodeView(t *testing.T) {
	me := store.Node{Name: "node-a", Device: "eth0"}
	pfx, addr := netip.MustParsePrefix, netip.MustParseAddr
	tests := []struct {
		name     string
		nodes    []*corev1.Node
		self     store.Node
		want     Nodes
		notReady string // a part of want.NotReady
	}{{
		name:  "this node from its Node: pod CIDR, InternalIP, the configured device; the others are peers",
		nodes: []*corev1.Node{node("node-b", []string{"10.244.2.0/24"}, "192.0.2.2"), node("node-a", []string{"10.244.1.0/24"}, "192.0.2.1")},
		self:  me,
		want: Nodes{
			Self:  store.Node{Name: "node-a", NodeIP: addr("192.0.2.1"), PodCIDR: pfx("10.244.1.0/24"), Device: "eth0"},
			Peers: []store.Peer{{Name: "node-b", NodeIP: addr("192.0.2.2"), PodCIDR: pfx("10.244.2.0/24")}},
		},
	}, {
		name:  "dual-stack: the IPv4 one of podCIDRs, of the node and its peers",
		nodes: []*corev1.Node{node("node-a", []string{"fd00:1::/64", "10.244.1.0/24"}, "192.0.2.1"), node("node-b", []string{"fd00:2::/64", "10.244.2.0/24"}, "192.0.2.2")},
		self:  me,
		want: Nodes{
			Self:  store.Node{Name: "node-a", NodeIP: addr("192.0.2.1"), PodCIDR: pfx("10.244.1.0/24"), Device: "eth0"},
			Peers: []store.Peer{{Name: "node-b", NodeIP: addr("192.0.2.2"), PodCIDR: pfx("10.244.2.0/24")}},
		},
	}, {
		name:  "the node IP given overrides the InternalIP",
		nodes: []*corev1.Node{node("node-a", []string{"10.244.1.0/24"}, "192.0.2.1")},
		self:  store.Node{Name: "node-a", NodeIP: addr("198.18.0.1"), Device: "eth0"},
		want:  Nodes{Self: store.Node{Name: "node-a", NodeIP: addr("198.18.0.1"), PodCIDR: pfx("10.244.1.0/24"), Device: "eth0"}},
	}, {
		name:     "no pod CIDR yet: not ready, and why",
		nodes:    []*corev1.Node{node("node-a", nil, "192.0.2.1")},
		self:     me,
		want:     Nodes{Self: me},
		notReady: "node node-a has no IPv4 spec.podCIDR yet",
	}, {
		name:     "no Node at all: not ready",
		self:     me,
		want:     Nodes{Self: me},
		notReady: `no Node "node-a"`,
	}, {
		name:     "no InternalIP and none given: not ready",
		nodes:    []*corev1.Node{node("node-a", []string{"10.244.1.0/24"}, "")},
		self:     me,
		want:     Nodes{Self: store.Node{Name: "node-a", PodCIDR: pfx("10.244.1.0/24"), Device: "eth0"}},
		notReady: "no IPv4 InternalIP",
	}, {
		name: "a peer without a pod CIDR (yet) is no peer and no problem; unusable ones are problems",
		nodes: []*corev1.Node{
			node("node-a", []string{"10.244.1.0/24"}, "192.0.2.1"),
			node("node-b", nil, "192.0.2.2"),
			node("node-c", []string{"10.244.3.1/24"}, "192.0.2.3"),
			node("node-d", []string{"10.244.4.0/24"}, ""),
			node("node-e", []string{"garbage"}, "192.0.2.5"),
			node("node-f", []string{"fd00:6::/64"}, "192.0.2.6"),
		},
		self: me,
		want: Nodes{
			Self: store.Node{Name: "node-a", NodeIP: addr("192.0.2.1"), PodCIDR: pfx("10.244.1.0/24"), Device: "eth0"},
			Problems: []string{
				"node node-c: pod CIDR 10.244.3.1/24 has host bits set",
				"node node-d: no IPv4 InternalIP in status.addresses",
				`node node-e: pod CIDR "garbage" is not a CIDR`,
			},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NodeView(tt.nodes, tt.self)
			if tt.notReady == "" && got.NotReady != "" || !strings.Contains(got.NotReady, tt.notReady) {
				t.Errorf("not ready %q, want %q", got.NotReady, tt.notReady)
			}
			got.NotReady = ""
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
