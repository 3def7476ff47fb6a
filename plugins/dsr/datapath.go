package main

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/braid-cni/braid/core/bpfobj"
	"github.com/braid-cni/braid/core/chain"
	"github.com/braid-cni/braid/core/chained"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/sysctl"
	"github.com/braid-cni/braid/core/tcx"
	"github.com/cilium/ebpf"
	ebpflink "github.com/cilium/ebpf/link"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// datapath is dsr's loaded programs and maps for one call.
type datapath struct {
	conf *NetConf
	objs dsrObjects
	eps  *maps.Endpoints
}

func openDatapath(conf *NetConf) (*datapath, error) {
	d := &datapath{conf: conf}
	eps, err := bpfobj.Load(conf.BPFRoot, pluginName, loadDsr, &d.objs)
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

// PodProgram rewrites a backend pod's replies to come from the service.
func (d *datapath) PodProgram() *ebpf.Program                          { return d.objs.FromContainer }
func (d *datapath) AdjustPod(chained.Cluster, *chain.Attachment) error { return nil }
func (d *datapath) CheckPod(chained.Cluster, *chain.Attachment) error  { return nil }

// Reconcile attaches the node device (and overlay device) programs, writes
// the settings and makes the node-port, Maglev and node maps match the store.
func (d *datapath) Reconcile(c chained.Cluster, r *plugin.Report) error {
	dev, err := link(c.Node.Device)
	if err != nil {
		return err
	}
	devices := []string{c.Node.Device}
	ov, err := d.overlay()
	if err != nil {
		// The routing plugin after us in the chain creates it; the next
		// reconcile (next ADD, braid sync) attaches.
		r.Problem("overlay device %s is not there yet: %v", d.conf.OverlayDevice, err)
	}
	if ov != nil {
		devices = append(devices, d.conf.OverlayDevice)
		if err := tcx.AttachFirst(ov.Attrs().Index, tcx.Ingress, d.objs.FromOverlay, d.pin(d.conf.OverlayDevice)); err != nil {
			return err
		}
	}
	changes, err := sysctl.Ensure(sysctl.Forwarding(devices...)...)
	r.Changes = append(r.Changes, changes...)
	if err != nil {
		return err
	}
	want, err := d.settings(c, dev, ov)
	if err != nil {
		return err
	}
	if _, err := maps.PutIfChanged(d.objs.DsrSettings, uint32(0), want); err != nil {
		return fmt.Errorf("dsr settings: %w", err)
	}
	if err := d.attachNetdev(dev.Attrs().Index, d.pin(c.Node.Device), r); err != nil {
		return err
	}
	if err := d.syncNodes(c); err != nil {
		return err
	}
	if err := d.reclaim(r); err != nil {
		return err
	}
	return d.syncNodePorts(c, r)
}

// attachNetdev attaches from_netdev first at the node device's ingress,
// not after the programs there: native-route's from_netdev would deliver a
// packet carrying the option to the pod unrecorded (its replies then not
// rewritten). Conflist order puts dsr first anyway; a link re-created by a
// repair must not land after it, and one an older build's repair left
// behind another program is moved back to the head.
func (d *datapath) attachNetdev(ifindex int, pin string, r *plugin.Report) error {
	if l, err := ebpflink.LoadPinnedLink(pin, nil); err == nil {
		behind := !runsFirst(l, ifindex)
		if behind {
			// Detached now, not when the kernel gets to the unpinned link:
			// until then its program counts as attached, and attaching it
			// again would fail.
			err = errors.Join(l.Detach(), l.Unpin())
		}
		l.Close()
		if err != nil {
			return fmt.Errorf("move from_netdev to the head: %w", err)
		}
		if behind {
			r.Changed("from_netdev moved ahead of the other programs on ifindex %d", ifindex)
		}
	}
	return tcx.AttachFirst(ifindex, tcx.Ingress, d.objs.FromNetdev, pin)
}

// runsFirst reports whether l's program runs first at ifindex's tcx
// ingress; a link it cannot tell about counts as first (AttachFirst
// handles one that is stale).
func runsFirst(l ebpflink.Link, ifindex int) bool {
	info, err := l.Info()
	if err != nil || info.TCX() == nil || int(info.TCX().Ifindex) != ifindex {
		return true
	}
	res, err := ebpflink.QueryPrograms(ebpflink.QueryOptions{Target: ifindex, Attach: tcx.Ingress})
	return err != nil || len(res.Programs) == 0 || res.Programs[0].ID == info.Program
}

// overlay is the VXLAN device in overlay mode; nil in native mode.
func (d *datapath) overlay() (netlink.Link, error) {
	if d.conf.OverlayDevice == "" {
		return nil, nil
	}
	return link(d.conf.OverlayDevice)
}

// settings is what dsr_settings must hold: the node, the mode, where
// forwarded packets leave (ov nil: natively, by the node device), the
// overlay's VNI, the SNAT ports and the lifetimes of state.
func (d *datapath) settings(c chained.Cluster, dev, ov netlink.Link) (dsrDsrConf, error) {
	s := dsrDsrConf{NodeIp: maps.IPv4Word(c.Node.NodeIP), DeviceMtu: uint32(dev.Attrs().MTU), Vni: d.conf.VNI}
	snat, err := d.snatPorts()
	if err != nil {
		return s, err
	}
	d.setLifetimes(&s, snat)
	if d.conf.Mode == modeSNAT {
		s.Mode = 1
	}
	if ov != nil {
		// Forwarded packets leave through the overlay: the option must fit
		// its MTU, not the node device's.
		s.OverlayIfindex = uint32(ov.Attrs().Index)
		s.DeviceMtu = uint32(ov.Attrs().MTU)
	}
	return s, nil
}

func (d *datapath) pin(dev string) string {
	return chained.NodePin(d.conf.BPFRoot, pluginName, dev, "ingress")
}

// trustedNodes is what dsr_nodes must hold: the cluster's other nodes.
func trustedNodes(c chained.Cluster) map[uint32]uint32 {
	want := map[uint32]uint32{}
	for _, p := range c.Peers {
		want[maps.IPv4Word(p.NodeIP)] = 0
	}
	return want
}

// peerCIDRs is what dsr_peer_cidrs must hold: each other node's pod
// CIDR, to its address.
func peerCIDRs(c chained.Cluster) map[dsrPeerCidr]uint32 {
	want := map[dsrPeerCidr]uint32{}
	for _, p := range c.Peers {
		if p.PodCIDR.IsValid() {
			k := dsrPeerCidr{Prefixlen: uint32(p.PodCIDR.Bits()), Ip: maps.IPv4Word(p.PodCIDR.Masked().Addr())}
			want[k] = maps.IPv4Word(p.NodeIP)
		}
	}
	return want
}

// syncNodes trusts DSR options, tunnels and SNAT replies from the
// cluster's nodes only.
func (d *datapath) syncNodes(c chained.Cluster) error {
	if _, _, err := maps.Sync(d.objs.DsrNodes, trustedNodes(c)); err != nil {
		return err
	}
	_, _, err := maps.Sync(d.objs.DsrPeerCidrs, peerCIDRs(c))
	return err
}

// CheckNode verifies the attachments, the settings, the trusted nodes, and
// that every NodePort service served has its node-port entry and Maglev
// table as they should be.
func (d *datapath) CheckNode(c chained.Cluster) error {
	dev, err := link(c.Node.Device)
	if err != nil {
		return err
	}
	if err := tcx.Verify(d.pin(c.Node.Device), dev.Attrs().Index); err != nil {
		return err
	}
	ov, err := d.overlay()
	if err != nil {
		return err
	}
	if ov != nil {
		if err := tcx.Verify(d.pin(d.conf.OverlayDevice), ov.Attrs().Index); err != nil {
			return err
		}
	}
	var have dsrDsrConf
	want, err := d.settings(c, dev, ov)
	if err != nil {
		return err
	}
	if err := d.objs.DsrSettings.Lookup(uint32(0), &have); err != nil || have != want {
		return fmt.Errorf("dsr_settings does not hold this node's settings (node IP %s, mode %s)", c.Node.NodeIP, d.conf.Mode)
	}
	if err := d.checkNodes(c); err != nil {
		return err
	}
	ports, _ := d.nodePorts(c)
	for k, np := range ports {
		if err := d.checkNodePort(k, np); err != nil {
			return err
		}
	}
	for k, np := range d.externals(c) {
		var have dsrNodeportSvc
		if err := d.objs.DsrExternals.Lookup(k, &have); err != nil || have != np.entry {
			return fmt.Errorf("external %s:%d/%s of service %s is not in the external map as it should be", np.svc.VIP, np.svc.Port, np.svc.Protocol, np.svc.Name)
		}
	}
	return nil
}

// checkNodes: dsr_nodes trusts exactly the cluster's other nodes.
func (d *datapath) checkNodes(c chained.Cluster) error {
	want := trustedNodes(c)
	var ip, v uint32
	n := 0
	it := d.objs.DsrNodes.Iterate()
	for it.Next(&ip, &v) {
		if _, ok := want[ip]; !ok {
			return fmt.Errorf("dsr_nodes trusts %s, which is not a node of the cluster", maps.WordIPv4(ip))
		}
		n++
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("dsr_nodes: %w", err)
	}
	if n != len(want) {
		return fmt.Errorf("dsr_nodes trusts %d of the cluster's %d other nodes", n, len(want))
	}
	return nil
}

// checkNodePort verifies one service's node-port entry and Maglev table.
func (d *datapath) checkNodePort(k dsrNodeportKey, np nodePort) error {
	name := fmt.Sprintf("node port %d/%s of service %s", np.svc.NodePort, np.svc.Protocol, np.svc.Name)
	var have dsrNodeportSvc
	if err := d.objs.DsrNodeports.Lookup(k, &have); err != nil || have != np.entry {
		return fmt.Errorf("%s is not in the node-port map as it should be", name)
	}
	want, err := d.table(np)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if want == nil {
		return nil
	}
	table, err := d.readTable(np.svc.ID)
	if err != nil {
		return fmt.Errorf("%s: no Maglev table in dsr_maglev: %v", name, err)
	}
	if !bytes.Equal(table, want) {
		return fmt.Errorf("%s: its Maglev table in dsr_maglev is not the one its backends make", name)
	}
	return nil
}

func link(name string) (netlink.Link, error) {
	l, err := netlinksafe.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("device %q: %w", name, err)
	}
	return l, nil
}
