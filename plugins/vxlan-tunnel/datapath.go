package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/braid-cni/braid/core/bpfobj"
	"github.com/braid-cni/braid/core/chain"
	"github.com/braid-cni/braid/core/chained"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/notfound"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/routes"
	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/core/sysctl"
	"github.com/braid-cni/braid/core/tcx"
	"github.com/cilium/ebpf"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// datapath is vxlan-tunnel's loaded programs and maps for one call.
type datapath struct {
	conf *NetConf
	objs vxlanTunnelObjects
	eps  *maps.Endpoints
}

func openDatapath(conf *NetConf) (*datapath, error) {
	d := &datapath{conf: conf}
	eps, err := bpfobj.Load(conf.BPFRoot, pluginName, loadVxlanTunnel, &d.objs)
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

// podMTU is the underlay's MTU less the encapsulation.
func podMTU(node store.Node) (int, error) {
	l, err := netlinksafe.LinkByName(node.Device)
	if err != nil {
		return 0, fmt.Errorf("node device %q: %w", node.Device, err)
	}
	return l.Attrs().MTU - overhead, nil
}

// Reconcile makes the device, its programs, the tunnel maps and the routes
// to remote pod CIDRs match the cluster.
func (d *datapath) Reconcile(c chained.Cluster, r *plugin.Report) error {
	mtu, err := podMTU(c.Node)
	if err != nil {
		return err
	}
	dev, change, err := ensureDevice(d.conf.VXLANDevice, d.conf.VXLANPort, mtu)
	if err != nil {
		return err
	}
	if change != "" {
		r.Changed("%s", change)
	}
	changes, err := sysctl.Ensure(sysctl.Forwarding(d.conf.VXLANDevice)...)
	r.Changes = append(r.Changes, changes...)
	if err != nil {
		return err
	}
	ifindex := dev.Attrs().Index
	conf := vxlanTunnelTunnelConf{VxlanIfindex: uint32(ifindex), Vni: d.conf.VNI, NodeIp: maps.IPv4Word(c.Node.NodeIP)}
	if err := d.objs.TunnelSettings.Put(uint32(0), conf); err != nil {
		return fmt.Errorf("tunnel settings: %w", err)
	}
	if err := d.attachDevice(ifindex); err != nil {
		return err
	}
	if err := d.syncMaps(c.Peers, r); err != nil {
		return err
	}
	changes, err = routes.Sync(dev, peerRoutes(ifindex, c.Peers))
	r.Changes = append(r.Changes, changes...)
	return err
}

func (d *datapath) attachDevice(ifindex int) error {
	in, out := d.devicePins()
	if err := tcx.Attach(ifindex, tcx.Ingress, d.objs.FromOverlay, in); err != nil {
		return err
	}
	return tcx.Attach(ifindex, tcx.Egress, d.objs.ToOverlay, out)
}

func (d *datapath) devicePins() (ingress, egress string) {
	return chained.NodePin(d.conf.BPFRoot, pluginName, d.conf.VXLANDevice, "ingress"),
		chained.NodePin(d.conf.BPFRoot, pluginName, d.conf.VXLANDevice, "egress")
}

// peerRoutes sends remote pod CIDRs into the overlay, so the node's own
// stack (and anything the programs hand it) reaches remote pods too.
func peerRoutes(ifindex int, peers []store.Peer) []netlink.Route {
	var out []netlink.Route
	for _, p := range peers {
		out = append(out, netlink.Route{LinkIndex: ifindex, Dst: prefixNet(p.PodCIDR), Scope: netlink.SCOPE_LINK})
	}
	return out
}

// syncMaps makes tunnel_map (pod CIDR -> node IP) and tunnel_peers (known
// node IPs) hold exactly the cluster's peers.
func (d *datapath) syncMaps(peers []store.Peer, r *plugin.Report) error {
	tunnels := map[vxlanTunnelTunnelKey]vxlanTunnelTunnelEndpoint{}
	nodes := map[uint32]uint32{}
	for _, p := range peers {
		tunnels[tunnelKey(p.PodCIDR)] = vxlanTunnelTunnelEndpoint{NodeIp: maps.IPv4Word(p.NodeIP)}
		nodes[maps.IPv4Word(p.NodeIP)] = 0
	}
	written, removed, err := maps.Sync(d.objs.TunnelMap, tunnels)
	for _, k := range removed {
		r.Changed("tunnel map: removed %s", keyPrefix(k))
	}
	for _, k := range written {
		r.Changed("tunnel map: %s -> %s", keyPrefix(k), maps.WordIPv4(tunnels[k].NodeIp))
	}
	if err != nil {
		return fmt.Errorf("tunnel map: %w (it holds %d nodes)", err, d.objs.TunnelMap.MaxEntries())
	}
	_, _, err = maps.Sync(d.objs.TunnelPeers, nodes)
	return err
}

// CheckNode verifies the device, its programs, settings and tunnel map.
func (d *datapath) CheckNode(c chained.Cluster) error {
	mtu, err := podMTU(c.Node)
	if err != nil {
		return err
	}
	l, err := netlinksafe.LinkByName(d.conf.VXLANDevice)
	if notfound.Is(err) {
		return fmt.Errorf("VXLAN device %s is missing: %w", d.conf.VXLANDevice, err)
	}
	if err != nil {
		return fmt.Errorf("VXLAN device %s: %w", d.conf.VXLANDevice, err)
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok || !vx.FlowBased || vx.Port != d.conf.VXLANPort || vx.MTU != mtu {
		return fmt.Errorf("%s is not a collect_md VXLAN device on port %d with mtu %d", d.conf.VXLANDevice, d.conf.VXLANPort, mtu)
	}
	in, out := d.devicePins()
	for _, pin := range []string{in, out} {
		if err := tcx.Verify(pin, l.Attrs().Index); err != nil {
			return err
		}
	}
	for _, p := range c.Peers {
		var v vxlanTunnelTunnelEndpoint
		err := d.objs.TunnelMap.Lookup(tunnelKey(p.PodCIDR), &v)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("tunnel map entry %s for node %s: %w", p.PodCIDR, p.Name, err)
		}
		if err != nil || maps.WordIPv4(v.NodeIp) != p.NodeIP {
			return fmt.Errorf("tunnel map has no entry %s -> %s for node %s", p.PodCIDR, p.NodeIP, p.Name)
		}
	}
	return nil
}

// AdjustPod lowers both ends of the pod's veth to the overlay MTU.
func (d *datapath) AdjustPod(c chained.Cluster, a *chain.Attachment) error {
	mtu, err := podMTU(c.Node)
	if err != nil {
		return err
	}
	if err := lowerMTU(a.Host.Name, mtu); err != nil {
		return err
	}
	err = ns.WithNetNSPath(a.Pod.Sandbox, func(ns.NetNS) error { return lowerMTU(a.Pod.Name, mtu) })
	if err != nil {
		return err
	}
	a.Host.Mtu, a.Pod.Mtu = min(orMax(a.Host.Mtu), mtu), min(orMax(a.Pod.Mtu), mtu)
	return nil
}

// CheckPod verifies that the pod's veth fits in the overlay.
func (d *datapath) CheckPod(c chained.Cluster, a *chain.Attachment) error {
	mtu, err := podMTU(c.Node)
	if err != nil {
		return err
	}
	l, err := netlinksafe.LinkByName(a.Host.Name)
	if err != nil {
		return fmt.Errorf("host interface %s: %w", a.Host.Name, err)
	}
	if l.Attrs().MTU > mtu {
		return fmt.Errorf("host interface %s has mtu %d, more than the overlay's %d", a.Host.Name, l.Attrs().MTU, mtu)
	}
	return nil
}

func lowerMTU(name string, mtu int) error {
	l, err := netlinksafe.LinkByName(name)
	if err != nil {
		return fmt.Errorf("interface %s: %w", name, err)
	}
	if l.Attrs().MTU <= mtu {
		return nil
	}
	return netlink.LinkSetMTU(l, mtu)
}

func orMax(mtu int) int {
	if mtu == 0 {
		return 1 << 16
	}
	return mtu
}

func tunnelKey(p netip.Prefix) vxlanTunnelTunnelKey {
	return vxlanTunnelTunnelKey{Prefixlen: uint32(p.Bits()), Ip4: maps.IPv4Word(p.Masked().Addr())}
}

func keyPrefix(k vxlanTunnelTunnelKey) netip.Prefix {
	return netip.PrefixFrom(maps.WordIPv4(k.Ip4), int(k.Prefixlen))
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Masked().Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}
