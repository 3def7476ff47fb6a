package socklb

import (
	"net"
	"net/netip"
	"testing"

	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/sockprobe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestHostNamespaceOnly: on the VXLAN overlay (chain-configs/vxlan-lb.conflist),
// node 1 balances only its own netns's sockets. To tell "untouched" from
// "lost", node 1 itself holds the VIP on lo and answers on VIP:80 as
// "vip-itself": a pod's connect that sock-lb leaves alone lands there.
func TestHostNamespaceOnly(t *testing.T) {
	topo := harness.New(t)
	n1, n2 := topo.AddNode(t), topo.AddNode(t)
	harness.Mesh(t, n1, n2)
	c1 := n1.Conflist(t, "vxlan-lb.conflist", n1.SockLB(t, map[string]any{"hostNamespaceOnly": true}))
	c2 := n2.Conflist(t, "vxlan-lb.conflist", n2.SockLB(t, nil))
	client := c1.AddPod(t, "client")
	b2 := serve(t, c2.AddPod(t, "b2"))
	apply(t, n1, service("web", vipWeb, store.TCP, b2.tcp), service("dns", vipDNS, store.UDP, b2.udp))
	c1.RequireSync(t)

	vip := netip.MustParseAddrPort(vipWeb)
	err := n1.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		// Scope host: local, but never picked as the source address of
		// the node's own connections.
		return netlink.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: vip.Addr().AsSlice(), Mask: net.CIDRMask(32, 32)},
			Scope: unix.RT_SCOPE_HOST})
	})
	if err != nil {
		t.Fatal(err)
	}
	n1.ServeTCP(t, vipWeb, "vip-itself")

	pod := n1.Probe(t, client.NS)
	node := n1.Probe(t, n1.NS)
	before := n1.Counters(t, plugin)
	if r := one(t, pod, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb}); r.Err != "" || r.Reply != "vip-itself" || r.Peer != vipWeb {
		t.Errorf("pod's connect to %s: %+v, want it untouched (answered by vip-itself)", vipWeb, r)
	}
	if r := one(t, pod, sockprobe.Request{Op: sockprobe.OpUDP, Dst: vipDNS}); r.Err == "" {
		t.Errorf("pod's datagram to %s: %+v, want it untouched (nothing answers UDP on the VIP)", vipDNS, r)
	}
	mid := n1.Counters(t, plugin)
	if d := mid[cntSkippedNetns] - before[cntSkippedNetns]; d < 2 {
		t.Errorf("skipped_netns counted %d, want >= 2", d)
	}
	if mid[cntConnectLB] != before[cntConnectLB] || mid[cntSendmsgLB] != before[cntSendmsgLB] {
		t.Errorf("a pod's socket was balanced: counters %v -> %v", before, mid)
	}

	rs := do(t, node, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb, N: 10, StopOnError: true})
	for _, r := range rs {
		if r.Err != "" || r.Reply != "b2" || r.Peer != vipWeb {
			t.Fatalf("node's own connect to %s: %+v, want it balanced to b2 (over the overlay), peer the VIP", vipWeb, r)
		}
	}
	if r := one(t, node, sockprobe.Request{Op: sockprobe.OpUDP, Dst: vipDNS}); r.Err != "" || r.Reply != "b2" || r.From != vipDNS {
		t.Errorf("node's own datagram to %s: %+v, want b2's answer from the VIP", vipDNS, r)
	}
	if d := n1.Counters(t, plugin)[cntConnectLB] - mid[cntConnectLB]; d != 10 {
		t.Errorf("connect_lb counted %d, want 10", d)
	}
}
