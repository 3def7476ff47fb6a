package main

import (
	"fmt"

	"github.com/braid-cni/braid/core/bpfobj"
	"github.com/braid-cni/braid/core/chain"
	"github.com/braid-cni/braid/core/chained"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/sysctl"
	"github.com/braid-cni/braid/core/tcx"
	"github.com/cilium/ebpf"
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
	settings := dsrDsrConf{NodeIp: maps.IPv4Word(c.Node.NodeIP), DeviceMtu: uint32(dev.Attrs().MTU)}
	if d.conf.Mode == modeSNAT {
		settings.Mode = 1
	}
	devices := []string{c.Node.Device}
	if d.conf.OverlayDevice != "" {
		ov, err := link(d.conf.OverlayDevice)
		if err != nil {
			// The routing plugin after us in the chain creates it; the next
			// reconcile (next ADD, braid sync) attaches.
			r.Problem("overlay device %s is not there yet: %v", d.conf.OverlayDevice, err)
		} else {
			settings.OverlayIfindex = uint32(ov.Attrs().Index)
			// Forwarded packets leave through the overlay: the option must
			// fit its MTU, not the node device's.
			settings.DeviceMtu = uint32(ov.Attrs().MTU)
			devices = append(devices, d.conf.OverlayDevice)
			if err := tcx.AttachFirst(ov.Attrs().Index, tcx.Ingress, d.objs.FromOverlay, d.pin(d.conf.OverlayDevice)); err != nil {
				return err
			}
		}
	}
	changes, err := sysctl.Ensure(sysctl.Forwarding(devices...)...)
	r.Changes = append(r.Changes, changes...)
	if err != nil {
		return err
	}
	if _, err := maps.PutIfChanged(d.objs.DsrSettings, uint32(0), settings); err != nil {
		return fmt.Errorf("dsr settings: %w", err)
	}
	if err := tcx.Attach(dev.Attrs().Index, tcx.Ingress, d.objs.FromNetdev, d.pin(c.Node.Device)); err != nil {
		return err
	}
	if err := d.syncNodes(c); err != nil {
		return err
	}
	return d.syncNodePorts(c, r)
}

func (d *datapath) pin(dev string) string {
	return chained.NodePin(d.conf.BPFRoot, pluginName, dev, "ingress")
}

// syncNodes trusts DSR options from the cluster's nodes only.
func (d *datapath) syncNodes(c chained.Cluster) error {
	want := map[uint32]uint32{}
	for _, p := range c.Peers {
		want[maps.IPv4Word(p.NodeIP)] = 0
	}
	_, _, err := maps.Sync(d.objs.DsrNodes, want)
	return err
}

// CheckNode verifies the attachments and that every NodePort service is in
// the node-port map.
func (d *datapath) CheckNode(c chained.Cluster) error {
	dev, err := link(c.Node.Device)
	if err != nil {
		return err
	}
	if err := tcx.Verify(d.pin(c.Node.Device), dev.Attrs().Index); err != nil {
		return err
	}
	if d.conf.OverlayDevice != "" {
		ov, err := link(d.conf.OverlayDevice)
		if err != nil {
			return err
		}
		if err := tcx.Verify(d.pin(d.conf.OverlayDevice), ov.Attrs().Index); err != nil {
			return err
		}
	}
	want, _ := d.nodePorts(c)
	for k, np := range want {
		var have dsrNodeportSvc
		if err := d.objs.DsrNodeports.Lookup(k, &have); err != nil || have != np.entry {
			return fmt.Errorf("node port %d/%s of service %s is not in the node-port map as it should be", np.svc.NodePort, np.svc.Protocol, np.svc.Name)
		}
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
