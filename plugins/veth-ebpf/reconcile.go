package main

import (
	"fmt"

	"github.com/braid-cni/braid/core/notfound"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/store"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// reconcile rebuilds the datapath from the store: after a reboot of the
// datapath (pins and links gone, store kept) or pins removed by hand, every
// endpoint whose veth still exists gets its map entry and programs back. It
// also moves every link to this binary's programs (in place, no gap), which
// is how an upgrade reaches existing pods.
func reconcile(stdin []byte, r *plugin.Report) error {
	s, err := openSession(stdin, "RECONCILE")
	if err != nil {
		return err
	}
	defer s.Close()
	var eps []store.Endpoint
	if err := s.store.View(func(tx *store.Tx) error { eps, err = tx.Endpoints(); return err }); err != nil {
		return err
	}
	for _, ep := range eps {
		l, err := netlinksafe.LinkByName(ep.HostIfName)
		if err != nil && !notfound.Is(err) {
			return fmt.Errorf("endpoint %s: host veth %s: %w", ep.Key(), ep.HostIfName, err)
		}
		if err != nil || l.Attrs().Index != ep.HostIfIndex {
			r.Problem("endpoint %s (%s): host veth %s is gone; run GC", ep.Key(), ep.IPv4, ep.HostIfName)
			continue
		}
		if broken := checkHost(ep); broken != nil {
			if err := restoreHost(l, ep); err != nil {
				return err
			}
			r.Changed("endpoint %s (%s): node side restored (%v)", ep.Key(), ep.IPv4, broken)
		}
		want := newEndpointRef(ep.HostIfName, ep.HostIfIndex, ep.ID, ep.IPv4, mustMAC(ep.PodMAC), mustMAC(ep.HostMAC))
		broken := s.checkDatapath(ep)
		if err := s.dp.attach(want); err != nil {
			return err
		}
		if broken != nil {
			r.Changed("endpoint %s (%s): restored (%v)", ep.Key(), ep.IPv4, broken)
		}
	}
	return nil
}

// restoreHost brings the host veth up and puts back the node's /32 route and
// neighbour entry for the pod (each a replace: what is whole stays so).
func restoreHost(host netlink.Link, ep store.Endpoint) error {
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("set %s up: %w", ep.HostIfName, err)
	}
	return configureHost(host, ep.IPv4, mustMAC(ep.PodMAC))
}
