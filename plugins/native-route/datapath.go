package main

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/braid-cni/braid/core/bpfobj"
	"github.com/braid-cni/braid/core/chain"
	"github.com/braid-cni/braid/core/chained"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/routes"
	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/core/sysctl"
	"github.com/braid-cni/braid/core/tcx"
	"github.com/cilium/ebpf"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// datapath is native-route's loaded programs and maps for one call.
type datapath struct {
	conf *NetConf
	objs nativeRouteObjects
	eps  *maps.Endpoints
}

func openDatapath(conf *NetConf) (*datapath, error) {
	d := &datapath{conf: conf}
	eps, err := bpfobj.Load(conf.BPFRoot, pluginName, loadNativeRoute, &d.objs)
	if err != nil {
		return nil, err
	}
	d.eps = eps
	return d, nil
}

func (d *datapath) Close() {
	d.objs.Close()
	d.eps.Close()
}

func (d *datapath) PodProgram() *ebpf.Program { return d.objs.FromContainer }

func (d *datapath) device(node store.Node) (netlink.Link, error) {
	l, err := netlinksafe.LinkByName(node.Device)
	if err != nil {
		return nil, fmt.Errorf("node device %q: %w", node.Device, err)
	}
	return l, nil
}

// Reconcile attaches from_netdev to the node device and makes the routes to
// remote pod CIDRs match the cluster. A peer that is not on one of the
// device's subnets gets no route and is reported: a direct route to it
// could not work.
func (d *datapath) Reconcile(c chained.Cluster, r *plugin.Report) error {
	dev, err := d.device(c.Node)
	if err != nil {
		return err
	}
	changes, err := sysctl.Ensure(sysctl.Forwarding(c.Node.Device)...)
	r.Changes = append(r.Changes, changes...)
	if err != nil {
		return err
	}
	ifindex := dev.Attrs().Index
	if err := d.objs.NativeSettings.Put(uint32(0), nativeRouteNativeConf{DeviceIfindex: uint32(ifindex)}); err != nil {
		return fmt.Errorf("native settings: %w", err)
	}
	if err := tcx.Attach(ifindex, tcx.Ingress, d.objs.FromNetdev, d.devicePin(c.Node)); err != nil {
		return err
	}
	want, unreachable, err := peerRoutes(dev, c.Peers)
	if err != nil {
		return err
	}
	for _, p := range unreachable {
		r.Problem("node %s (%s) is not on a subnet of %s: native routing needs nodes on one L2 segment; use vxlan-tunnel", p.Name, p.NodeIP, c.Node.Device)
	}
	changes, err = routes.Sync(dev, want)
	r.Changes = append(r.Changes, changes...)
	if err != nil {
		return err
	}
	return d.syncPeers(want, r)
}

// syncPeers makes native_peers hold the pod CIDRs of the reachable peers:
// from_container redirects packets for those only. Everything else a pod
// sends (the internet, a metadata service, a service VIP, multicast) takes
// the stack, whose netfilter must see it.
func (d *datapath) syncPeers(want []netlink.Route, r *plugin.Report) error {
	_, removed, err := maps.Sync(d.objs.NativePeers, peerCIDRs(want))
	for _, k := range removed {
		r.Changed("native_peers: removed %s", netip.PrefixFrom(maps.WordIPv4(k.Ip4), int(k.Prefixlen)))
	}
	if err != nil {
		return fmt.Errorf("native_peers: %w (it holds %d nodes)", err, d.objs.NativePeers.MaxEntries())
	}
	return nil
}

// peerCIDRs is what native_peers must hold for the routes to peers.
func peerCIDRs(want []netlink.Route) map[nativeRoutePeerKey]uint32 {
	out := map[nativeRoutePeerKey]uint32{}
	for _, w := range want {
		ones, _ := w.Dst.Mask.Size()
		ip, _ := netip.AddrFromSlice(w.Dst.IP.To4())
		gw, _ := netip.AddrFromSlice(w.Gw.To4())
		cidr := netip.PrefixFrom(ip, ones).Masked()
		out[nativeRoutePeerKey{Prefixlen: uint32(ones), Ip4: maps.IPv4Word(cidr.Addr())}] = maps.IPv4Word(gw)
	}
	return out
}

func (d *datapath) devicePin(node store.Node) string {
	return chained.NodePin(d.conf.BPFRoot, pluginName, node.Device, "ingress")
}

// peerRoutes is a route per reachable peer: its pod CIDR via its node IP.
func peerRoutes(dev netlink.Link, peers []store.Peer) (want []netlink.Route, unreachable []store.Peer, err error) {
	subnets, err := connected(dev)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range peers {
		if !containsAny(subnets, p.NodeIP) {
			unreachable = append(unreachable, p)
			continue
		}
		want = append(want, netlink.Route{
			LinkIndex: dev.Attrs().Index,
			Dst:       &net.IPNet{IP: p.PodCIDR.Addr().AsSlice(), Mask: net.CIDRMask(p.PodCIDR.Bits(), 32)},
			Gw:        p.NodeIP.AsSlice(),
		})
	}
	return want, unreachable, nil
}

// connected lists the IPv4 subnets the device's addresses are on.
func connected(dev netlink.Link) ([]netip.Prefix, error) {
	addrs, err := netlinksafe.AddrList(dev, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip, ones).Masked())
	}
	return out, nil
}

func containsAny(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// CheckNode verifies the device program and a route per reachable peer, and
// fails on a peer no direct route can reach.
func (d *datapath) CheckNode(c chained.Cluster) error {
	dev, err := d.device(c.Node)
	if err != nil {
		return err
	}
	if err := tcx.Verify(d.devicePin(c.Node), dev.Attrs().Index); err != nil {
		return err
	}
	want, unreachable, err := peerRoutes(dev, c.Peers)
	if err != nil {
		return err
	}
	if len(unreachable) > 0 {
		return fmt.Errorf("node %s (%s) is not directly reachable through %s", unreachable[0].Name, unreachable[0].NodeIP, c.Node.Device)
	}
	have, err := routes.Owned(dev)
	if err != nil {
		return err
	}
	for _, w := range want {
		if !hasRoute(have, w) {
			return fmt.Errorf("route %s via %s is missing", w.Dst, w.Gw)
		}
	}
	for k, v := range peerCIDRs(want) {
		var have uint32
		if err := d.objs.NativePeers.Lookup(k, &have); err != nil || have != v {
			return fmt.Errorf("native_peers has no entry %s -> %s", netip.PrefixFrom(maps.WordIPv4(k.Ip4), int(k.Prefixlen)), maps.WordIPv4(v))
		}
	}
	return nil
}

func hasRoute(have []netlink.Route, w netlink.Route) bool {
	for _, h := range have {
		if h.Dst.String() == w.Dst.String() && h.Gw.Equal(w.Gw) {
			return true
		}
	}
	return false
}

// Native routing leaves the pod's interfaces as the interface plugin made them.
func (d *datapath) AdjustPod(chained.Cluster, *chain.Attachment) error { return nil }
func (d *datapath) CheckPod(chained.Cluster, *chain.Attachment) error  { return nil }
