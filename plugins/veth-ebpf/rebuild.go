package main

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/braid-cni/braid/core/bpffs"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/store"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
)

// aliasPrefix marks the host veth alias that records whose attachment it is:
// kernel state from which a lost store can be rebuilt (rebuild, run by
// `braid node rebuild`).
const aliasPrefix = "braid:"

// endpointAlias is the alias ADD sets on a host veth.
func endpointAlias(containerID, ifName string) string {
	return aliasPrefix + store.EndpointKey(containerID, ifName)
}

// parseEndpointAlias returns the attachment recorded in alias, if it is one.
func parseEndpointAlias(alias string) (containerID, ifName string, ok bool) {
	key, found := strings.CutPrefix(alias, aliasPrefix)
	if !found {
		return "", "", false
	}
	i := strings.LastIndexByte(key, '/')
	if i <= 0 || i == len(key)-1 {
		return "", "", false
	}
	return key[:i], key[i+1:], true
}

// rebuild records in a fresh store (its node identity set by `braid node
// rebuild`) every endpoint the kernel still holds: each host veth's alias
// names its attachment, and the endpoint map holds its address, MACs and
// id. One change is reported per endpoint restored.
func rebuild(stdin []byte, r *plugin.Report) error {
	conf, err := parseConfig(stdin)
	if err != nil {
		return err
	}
	st, err := plugin.OpenStore(conf.Common)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Update(func(tx *store.Tx) error {
		node, err := tx.Node()
		if err != nil {
			return err
		}
		eps, err := endpointsFromKernel(conf.BPFRoot, node.PodCIDR)
		if err != nil {
			return err
		}
		for i := range eps {
			if err := tx.RestoreEndpoint(eps[i]); err != nil {
				return err
			}
			r.Changed("endpoint %s (%s) restored from kernel state", eps[i].Key(), eps[i].IPv4)
		}
		return nil
	})
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
		cid, ifName, ok := parseEndpointAlias(l.Attrs().Alias)
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
