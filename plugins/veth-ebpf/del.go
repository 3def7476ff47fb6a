package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/braid-cni/braid/core/cnierr"
	"github.com/braid-cni/braid/core/notfound"
	"github.com/braid-cni/braid/core/store"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
)

// cmdDel tears the attachment down. It needs neither the netns nor a store
// record: everything is found by the attachment's derived names, so a DEL
// after a crashed ADD, a gone netns or a previous DEL still succeeds.
func cmdDel(args *skel.CmdArgs) error {
	s, err := openSession(args.StdinData, "DEL")
	if err != nil {
		return err
	}
	defer s.Close()
	err = s.store.Update(func(tx *store.Tx) error {
		ep, err := tx.Endpoint(store.EndpointKey(args.ContainerID, args.IfName))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		ep.ContainerID, ep.IfName = args.ContainerID, args.IfName
		ep.HostIfName = hostVethName(args.ContainerID, args.IfName)
		if ep.IPAMPlugin == "" && err != nil {
			ep.IPAMPlugin = s.conf.IPAM.Type // no record: trust the config
		}
		return s.teardown(tx, ep, args.StdinData)
	})
	if err != nil {
		return cnierr.Wrap(err, "veth-ebpf DEL")
	}
	s.log.Info("deleted", "container", args.ContainerID, "ifname", args.IfName)
	return nil
}

// teardown removes everything one endpoint owns, in the reverse order of ADD.
// stdin is the config to hand a delegated IPAM plugin (nil skips it).
func (s *session) teardown(tx *store.Tx, ep store.Endpoint, stdin []byte) error {
	if err := s.dp.detach(ep.HostIfName, ep.IPv4); err != nil {
		return err
	}
	if err := s.removeEntriesFor(ep.HostIfName); err != nil {
		return err
	}
	if err := deleteHostVeth(ep.HostIfName); err != nil {
		return err
	}
	if ep.IPAMPlugin != "" && stdin != nil {
		if err := ipamDel(ep, stdin); err != nil {
			return cnierr.Wrap(err, "ipam plugin %s", ep.IPAMPlugin)
		}
	}
	if err := releaseOwned(tx, ep.Key()); err != nil {
		return err
	}
	return tx.DeleteEndpoint(ep.Key())
}

// removeEntriesFor drops endpoint map entries that point at the host veth:
// after a crashed ADD the map may hold an entry the store never recorded.
func (s *session) removeEntriesFor(hostIf string) error {
	l, err := netlinksafe.LinkByName(hostIf)
	if notfound.Is(err) {
		return nil // no veth, no ifindex to match
	}
	if err != nil {
		return fmt.Errorf("host veth %s: %w", hostIf, err)
	}
	all, err := s.dp.endpoints.All()
	if err != nil {
		return err
	}
	for ip, info := range all {
		if int(info.Ifindex) == l.Attrs().Index {
			if err := s.dp.endpoints.Remove(ip); err != nil {
				return err
			}
		}
	}
	return nil
}

// releaseOwned frees every address owner holds in the node's pool.
func releaseOwned(tx *store.Tx, owner string) error {
	allocs, err := tx.Allocations()
	if err != nil {
		return err
	}
	for _, a := range allocs {
		if a.Owner == owner {
			if err := tx.Release(a.IP); err != nil {
				return err
			}
		}
	}
	return nil
}

// ipamDel releases ep's address in its delegated IPAM plugin, naming ep's
// own attachment rather than the call's: GC removes endpoints the runtime's
// CNI_CONTAINERID does not name, and a plugin without GC of its own (the
// reference host-local) would keep their addresses for ever.
func ipamDel(ep store.Endpoint, stdin []byte) error {
	cniPath := os.Getenv("CNI_PATH")
	path, err := invoke.FindInPath(ep.IPAMPlugin, filepath.SplitList(cniPath))
	if err != nil {
		return err
	}
	args := &invoke.Args{Command: "DEL", ContainerID: ep.ContainerID, NetNS: ep.Netns, IfName: ep.IfName, Path: cniPath}
	return invoke.ExecPluginWithoutResult(context.TODO(), path, stdin, args, nil)
}
