package main

import (
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/store"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
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
		if err != nil || l.Attrs().Index != ep.HostIfIndex {
			r.Problem("endpoint %s (%s): host veth %s is gone; run GC", ep.Key(), ep.IPv4, ep.HostIfName)
			continue
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
