package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/braid-cni/braid/core/bpffs"
	"github.com/braid-cni/braid/core/bpfobj"
	"github.com/braid-cni/braid/core/cnierr"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/tcx"
	"golang.org/x/sys/unix"
)

// datapath is this node's veth-ebpf BPF state: the shared endpoint map and,
// once something is to be attached, the plugin's loaded objects (programs,
// private maps pinned by name). DEL, CHECK and GC never load programs: the
// verifier's work would be half the cost of a pod's ADD+DEL.
type datapath struct {
	bpfRoot   string
	endpoints *maps.Endpoints
	objs      *vethEbpfObjects
	closers   []func() error
}

// openDatapath opens the node's endpoint map (mounting bpffs if needed).
func openDatapath(bpfRoot string) (*datapath, error) {
	if err := bpffs.Ensure(bpfRoot); err != nil {
		return nil, err
	}
	eps, err := maps.OpenEndpoints(bpfRoot)
	if err != nil {
		return nil, err
	}
	return &datapath{bpfRoot: bpfRoot, endpoints: eps, closers: []func() error{eps.Close}}, nil
}

// programs loads the plugin's objects against the endpoint map, once.
func (d *datapath) programs() (*vethEbpfObjects, error) {
	if d.objs != nil {
		return d.objs, nil
	}
	objs := &vethEbpfObjects{}
	eps, err := bpfobj.Load(d.bpfRoot, pluginName, loadVethEbpf, objs)
	if err != nil {
		return nil, err
	}
	d.objs, d.closers = objs, append(d.closers, objs.Close, eps.Close)
	return objs, nil
}

func (d *datapath) Close() {
	for _, c := range d.closers {
		c()
	}
}

// linkPins are the pins of the two attachments on one host veth.
func (d *datapath) linkPins(hostIf string) (ingress, egress string) {
	return bpffs.LinkPin(d.bpfRoot, pluginName, hostIf+"_ingress"),
		bpffs.LinkPin(d.bpfRoot, pluginName, hostIf+"_egress")
}

// attach publishes the endpoint and attaches both programs to its veth.
func (d *datapath) attach(ep endpointRef) error {
	if err := d.attachFromPod(ep); err != nil {
		return err
	}
	return d.attachToPod(ep)
}

// attachFromPod publishes the endpoint, then attaches from_container, which
// drops the pod's packets until the endpoint is known. It runs first on the
// veth, whatever was attached before and in whatever order a repair comes:
// the chained plugins' programs after it redirect packets (native-route,
// vxlan-tunnel), which must not happen before the anti-spoofing checks.
func (d *datapath) attachFromPod(ep endpointRef) error {
	if err := d.endpoints.Put(ep.ip, ep.info); err != nil {
		if errors.Is(err, unix.E2BIG) { // what a full hash map answers
			return cnierr.TryAgain("endpoint map is full (%d entries): delete unused pods, or run GC to drop entries no endpoint owns", maps.EndpointsMax)
		}
		return fmt.Errorf("endpoint map: %w (the map holds %d entries)", err, maps.EndpointsMax)
	}
	objs, err := d.programs()
	if err != nil {
		return err
	}
	in, _ := d.linkPins(ep.hostIf)
	_, err = tcx.AttachHead(int(ep.info.Ifindex), tcx.Ingress, objs.FromContainer, in)
	return err
}

// attachToPod attaches to_container.
func (d *datapath) attachToPod(ep endpointRef) error {
	objs, err := d.programs()
	if err != nil {
		return err
	}
	_, out := d.linkPins(ep.hostIf)
	return tcx.Attach(int(ep.info.Ifindex), tcx.Egress, objs.ToContainer, out)
}

// detach removes the endpoint's pins and map entry; absent is fine.
func (d *datapath) detach(hostIf string, ip netip.Addr) error {
	in, out := d.linkPins(hostIf)
	for _, pin := range []string{in, out} {
		if err := tcx.Detach(pin); err != nil {
			return err
		}
	}
	if ip.IsValid() {
		return d.endpoints.Remove(ip)
	}
	return nil
}

// endpointRef is what the datapath needs to know of one endpoint.
type endpointRef struct {
	hostIf string
	ip     netip.Addr
	info   maps.EndpointInfo
}

func newEndpointRef(hostIf string, ifindex int, id uint32, ip netip.Addr, podMAC, hostMAC net.HardwareAddr) endpointRef {
	ref := endpointRef{hostIf: hostIf, ip: ip, info: maps.EndpointInfo{Ifindex: uint32(ifindex), ID: id}}
	copy(ref.info.PodMAC[:], podMAC)
	copy(ref.info.HostMAC[:], hostMAC)
	return ref
}
