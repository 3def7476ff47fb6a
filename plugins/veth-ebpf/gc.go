package main

import (
	"context"
	"net/netip"
	"strings"

	"github.com/braid-cni/braid/core/bpffs"
	"github.com/braid-cni/braid/core/cnierr"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/store"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// cmdGC (CNI 1.1) removes every endpoint of this network (the config's
// name) not in cni.dev/valid-attachments, then whatever no endpoint owns: pins, map entries, allocations and host
// veths left behind by crashed calls.
func cmdGC(args *skel.CmdArgs) error {
	s, err := openSession(args.StdinData, "GC")
	if err != nil {
		return err
	}
	defer s.Close()
	valid := map[string]bool{}
	for _, a := range s.conf.ValidAttachments {
		valid[store.EndpointKey(a.ContainerID, a.IfName)] = true
	}
	err = s.store.Update(func(tx *store.Tx) error {
		eps, err := tx.Endpoints()
		if err != nil {
			return err
		}
		kept := map[string]store.Endpoint{}
		for _, ep := range eps {
			if valid[ep.Key()] || !ep.InNetwork(s.conf.Name) {
				kept[ep.HostIfName] = ep
				continue
			}
			s.log.Info("gc endpoint", "endpoint", ep.Key(), "ip", ep.IPv4)
			if err := s.teardown(tx, ep, args.StdinData); err != nil {
				return err
			}
		}
		return s.collectOrphans(tx, kept)
	})
	// The spec requires forwarding GC to a delegated plugin too: it may hold
	// addresses of attachments braid never recorded (a crashed ADD).
	if s.conf.IPAM.Type != "" {
		ipamErr := invoke.DelegateGC(context.TODO(), s.conf.IPAM.Type, args.StdinData, nil)
		if err == nil && ipamErr != nil {
			err = cnierr.Wrap(ipamErr, "ipam plugin %s", s.conf.IPAM.Type)
		}
	}
	return cnierr.Wrap(err, "veth-ebpf GC")
}

// collectOrphans removes kernel and store state that no kept endpoint owns.
func (s *session) collectOrphans(tx *store.Tx, kept map[string]store.Endpoint) error {
	keptIPs := map[netip.Addr]bool{}
	keptKeys := map[string]bool{}
	for _, ep := range kept {
		keptIPs[ep.IPv4] = true
		keptKeys[ep.Key()] = true
	}
	pins, err := bpffs.LinkPins(s.conf.BPFRoot, pluginName)
	if err != nil {
		return err
	}
	for _, pin := range pins {
		hostIf, _, _ := strings.Cut(pin, "_")
		if _, ok := kept[hostIf]; !ok {
			if err := bpffs.Remove(bpffs.LinkPin(s.conf.BPFRoot, pluginName, pin)); err != nil {
				return err
			}
		}
	}
	entries, err := s.dp.endpoints.All()
	if err != nil {
		return err
	}
	for ip := range entries {
		if !keptIPs[ip] {
			if err := s.dp.endpoints.Remove(ip); err != nil {
				return err
			}
		}
	}
	allocs, err := tx.Allocations()
	if err != nil {
		return err
	}
	for _, a := range allocs {
		if !keptKeys[a.Owner] {
			if err := tx.Release(a.IP); err != nil {
				return err
			}
		}
	}
	links, err := netlinksafe.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		name := l.Attrs().Name
		if _, ok := kept[name]; !ok && l.Type() == "veth" && isHostVethName(name) {
			if err := netlink.LinkDel(l); err != nil {
				return err
			}
		}
	}
	return nil
}

// isHostVethName matches names made by hostVethName.
func isHostVethName(name string) bool {
	return len(name) == len(hostVethPrefix)+12 && strings.HasPrefix(name, hostVethPrefix)
}

// collect is the agent's GC (the Datapath service's GC): every endpoint in
// the store is kept and what none of them owns goes. It decides inside the
// store transaction, and an ADD holds the store throughout, so the two
// never race.
func collect(stdin []byte, _ *plugin.Report) error {
	s, err := openSession(stdin, "COLLECT")
	if err != nil {
		return err
	}
	defer s.Close()
	return s.store.Update(func(tx *store.Tx) error {
		eps, err := tx.Endpoints()
		if err != nil {
			return err
		}
		kept := map[string]store.Endpoint{}
		for _, ep := range eps {
			kept[ep.HostIfName] = ep
		}
		return s.collectOrphans(tx, kept)
	})
}
