package harness

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ClientNet is the external clients' subnet on the underlay.
var ClientNet = netip.MustParsePrefix("198.18.1.0/24")

// underlayNet is the nodes' subnet on the underlay.
var underlayNet = netip.MustParsePrefix("198.18.0.0/24")

// AddClient adds client i (1…200) of NodePort services: a Host "c<i>" at
// 198.18.1.<9+i>/24, outside the cluster, with the node sysctls and
// on-link routes between it and the nodes both ways (198.18.0.0/24 from the
// client, 198.18.1.0/24 from every node already in the topology; see
// RouteToClients for nodes added later).
func (topo *Topology) AddClient(t testing.TB, i int) *Host {
	t.Helper()
	if i < 1 || i > 200 {
		t.Fatalf("client %d: want 1…200", i)
	}
	c := topo.AddHost(t, fmt.Sprintf("c%d", i),
		netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(9 + i)}), ClientNet.Bits()))
	for _, kv := range nodeSysctls {
		if err := c.Sysctl(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Sysctl("net/ipv4/ip_forward", "0"); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(func() error { return onLinkRoute(underlayNet) }); err != nil {
		t.Fatalf("client %s: %v", c.IP, err)
	}
	for _, n := range topo.Nodes {
		n.RouteToClients(t)
	}
	return c
}

// RouteToClients adds the node's on-link route to the clients' subnet
// (idempotent).
func (n *Node) RouteToClients(t testing.TB) {
	t.Helper()
	if err := n.Do(func() error { return onLinkRoute(ClientNet) }); err != nil {
		t.Fatalf("node %s: %v", n.Name, err)
	}
}

// onLinkRoute adds "dst dev NodeDevice scope link" in the current netns.
func onLinkRoute(dst netip.Prefix) error {
	l, err := netlink.LinkByName(NodeDevice)
	if err != nil {
		return err
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Scope: netlink.SCOPE_LINK,
		Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)}}
	if err := netlink.RouteAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("route %s dev %s: %w", dst, NodeDevice, err)
	}
	return nil
}

// LinkMAC is the MAC address of the named interface inside ns.
func (ns *NS) LinkMAC(t testing.TB, ifname string) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err == nil {
			mac = l.Attrs().HardwareAddr
		}
		return err
	})
	if err != nil {
		t.Fatalf("%s in %s: %v", ifname, ns, err)
	}
	return mac
}
