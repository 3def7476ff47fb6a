package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/braid-cni/braid/core/bpffs"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/store"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/spf13/cobra"
)

// nodeRebuildCmd recovers from a lost or corrupt store: the file is moved
// aside and a new one written from the node's identity (flags, as for init)
// and from kernel state: each host veth's alias names its attachment, and
// the endpoint map holds its address, MACs and id. Peers and services are
// not in kernel state: the agent re-syncs them, or add them again.
func nodeRebuildCmd(g *globals) *cobra.Command {
	var name, nodeIP, podCIDR, device string
	cmd := &cobra.Command{
		Use:   "rebuild",
		Short: "rebuild a corrupt or lost node store from kernel state (endpoints, allocations)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			n, err := parseNode(name, nodeIP, podCIDR, device)
			if err != nil {
				return err
			}
			eps, err := endpointsFromKernel(g.bpfRoot, n.PodCIDR)
			if err != nil {
				return err
			}
			if moved, err := moveAside(g.stateDir); err != nil {
				return err
			} else if moved != "" {
				fmt.Fprintf(stdout(), "old store moved to %s\n", moved)
			}
			err = g.update(func(tx *store.Tx) error {
				if err := tx.SetNode(n); err != nil {
					return err
				}
				for i := range eps {
					if err := tx.RestoreEndpoint(eps[i]); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout(), "node %s: store rebuilt with %d endpoints from kernel state; run `braid sync` (and re-add peers and services unless the agent does)\n", n.Name, len(eps))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "node name (required)")
	f.StringVar(&nodeIP, "node-ip", "", "node IPv4 address (required)")
	f.StringVar(&podCIDR, "pod-cidr", "", "the node's pod CIDR (required)")
	f.StringVar(&device, "device", "", "node device (required)")
	for _, req := range []string{"name", "node-ip", "pod-cidr", "device"} {
		_ = cmd.MarkFlagRequired(req)
	}
	return cmd
}

// endpointsFromKernel pairs host veths carrying a braid alias with their
// endpoint map entries.
func endpointsFromKernel(bpfRoot string, podCIDR netip.Prefix) ([]store.Endpoint, error) {
	if !bpffs.IsMounted(bpfRoot) {
		return nil, fmt.Errorf("bpffs is not mounted at %s: the endpoint map is gone too, nothing to rebuild from", bpfRoot)
	}
	m, err := maps.OpenEndpoints(bpfRoot)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	entries, err := m.All()
	if err != nil {
		return nil, err
	}
	byIfindex := map[uint32]netip.Addr{}
	for ip, info := range entries {
		byIfindex[info.Ifindex] = ip
	}
	links, err := netlinksafe.LinkList()
	if err != nil {
		return nil, err
	}
	var out []store.Endpoint
	for _, l := range links {
		cid, ifName, ok := store.ParseEndpointAlias(l.Attrs().Alias)
		ip, known := byIfindex[uint32(l.Attrs().Index)]
		if !ok || !known || !podCIDR.Contains(ip) {
			continue
		}
		info := entries[ip]
		out = append(out, store.Endpoint{
			ID: info.ID, ContainerID: cid, IfName: ifName, IPv4: ip,
			HostIfName: l.Attrs().Name, HostIfIndex: l.Attrs().Index,
			HostMAC: maps.MAC(info.HostMAC), PodMAC: maps.MAC(info.PodMAC),
			MTU: l.Attrs().MTU, Created: time.Now().UTC(),
		})
	}
	return out, nil
}

// moveAside renames the store file out of the way; absent is fine.
func moveAside(stateDir string) (string, error) {
	path := filepath.Join(stateDir, store.FileName)
	dst := fmt.Sprintf("%s.broken-%s", path, time.Now().UTC().Format("20060102T150405"))
	if err := os.Rename(path, dst); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return "", fmt.Errorf("move the old store aside: %w", err)
	}
	return dst, nil
}
