package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/braid-cni/braid/core/cnierr"
	"github.com/braid-cni/braid/core/notfound"
	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/core/tcx"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ipam"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// cmdCheck verifies that the attachment is whole and says which part is not:
// the store record, the host veth with the node's route and neighbour entry
// for the pod, the pod interface with its address, routes and neighbour
// entry for the gateway, both program attachments and the endpoint map entry.
func cmdCheck(args *skel.CmdArgs) error {
	s, err := openSession(args.StdinData, "CHECK")
	if err != nil {
		return err
	}
	defer s.Close()
	if s.conf.PrevResult == nil {
		return cnierr.Invalid("prevResult", "CHECK needs the result of ADD")
	}
	prev, err := current.NewResultFromResult(s.conf.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "prevResult: "+err.Error(), "")
	}
	var ep store.Endpoint
	err = s.store.View(func(tx *store.Tx) error {
		ep, err = tx.Endpoint(store.EndpointKey(args.ContainerID, args.IfName))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("no endpoint %s/%s on this node", args.ContainerID, args.IfName), "")
	}
	if err != nil {
		return cnierr.Wrap(err, "veth-ebpf CHECK")
	}
	for _, step := range []func() error{
		func() error { return checkPrevResult(prev, ep) },
		func() error { return checkHost(ep) },
		func() error { return checkPod(args.Netns, ep) },
		func() error { return s.checkDatapath(ep) },
		func() error { return checkIPAM(ep, args.StdinData) },
	} {
		if err := step(); err != nil {
			return cnierr.Wrap(err, "veth-ebpf CHECK %s", ep.Key())
		}
	}
	return nil
}

// checkIPAM runs CHECK on a delegated IPAM plugin, as the spec requires.
func checkIPAM(ep store.Endpoint, stdin []byte) error {
	if ep.IPAMPlugin == "" {
		return nil
	}
	return cnierr.Wrap(ipam.ExecCheck(ep.IPAMPlugin, stdin), "ipam plugin %s", ep.IPAMPlugin)
}

func checkPrevResult(prev *current.Result, ep store.Endpoint) error {
	for _, ipc := range prev.IPs {
		if ipc.Address.IP.Equal(ep.IPv4.AsSlice()) {
			return nil
		}
	}
	return fmt.Errorf("prevResult does not hold the endpoint's address %s", ep.IPv4)
}

func checkHost(ep store.Endpoint) error {
	l, err := netlinksafe.LinkByName(ep.HostIfName)
	if notfound.Is(err) {
		return fmt.Errorf("host veth %s is missing: %w", ep.HostIfName, err)
	}
	if err != nil {
		return fmt.Errorf("host veth %s: %w", ep.HostIfName, err)
	}
	if l.Type() != "veth" || l.Attrs().Index != ep.HostIfIndex {
		return fmt.Errorf("host interface %s is a %s with ifindex %d, want a veth with ifindex %d",
			ep.HostIfName, l.Type(), l.Attrs().Index, ep.HostIfIndex)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("host veth %s is down", ep.HostIfName)
	}
	routes, err := netlinksafe.RouteList(l, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	if !hasLinkRoute(routes, ep.IPv4) {
		return fmt.Errorf("node has no route to pod %s/32 on %s", ep.IPv4, ep.HostIfName)
	}
	return checkNeighbour(l, ep.IPv4, ep.PodMAC, "node's neighbour entry for pod")
}

// checkNeighbour wants a permanent neighbour entry for ip with mac on l:
// both ends resolve each other without ARP.
func checkNeighbour(l netlink.Link, ip netip.Addr, mac, what string) error {
	neighs, err := netlink.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, n := range neighs {
		if n.IP.Equal(ip.AsSlice()) {
			if n.HardwareAddr.String() != mac || n.State&netlink.NUD_PERMANENT == 0 {
				return fmt.Errorf("%s %s is %s (state %#x), want %s permanent", what, ip, n.HardwareAddr, n.State, mac)
			}
			return nil
		}
	}
	return fmt.Errorf("%s %s is missing on %s", what, ip, l.Attrs().Name)
}

func checkPod(netnsPath string, ep store.Endpoint) error {
	netns, err := ns.GetNS(netnsPath)
	if err != nil {
		return fmt.Errorf("pod netns %s: %w", netnsPath, err)
	}
	defer netns.Close()
	return netns.Do(func(ns.NetNS) error {
		l, err := netlinksafe.LinkByName(ep.IfName)
		if notfound.Is(err) {
			return fmt.Errorf("pod interface %s is missing: %w", ep.IfName, err)
		}
		if err != nil {
			return fmt.Errorf("pod interface %s: %w", ep.IfName, err)
		}
		if l.Attrs().HardwareAddr.String() != ep.PodMAC {
			return fmt.Errorf("pod interface %s has MAC %s, want %s", ep.IfName, l.Attrs().HardwareAddr, ep.PodMAC)
		}
		addrs, err := netlinksafe.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if !hasAddr(addrs, ep.IPv4) {
			return fmt.Errorf("pod interface %s lacks address %s/32", ep.IfName, ep.IPv4)
		}
		routes, err := netlinksafe.RouteList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if !hasLinkRoute(routes, gatewayIP) {
			return fmt.Errorf("pod has no route to the gateway %s on %s", gatewayIP, ep.IfName)
		}
		switch def := hasDefaultVia(routes, gatewayIP); {
		case !def && !ep.Secondary:
			return fmt.Errorf("pod has no default route via %s on %s", gatewayIP, ep.IfName)
		case def && ep.Secondary:
			return fmt.Errorf("pod has a default route on %s, a secondary attachment", ep.IfName)
		}
		return checkNeighbour(l, gatewayIP, ep.HostMAC, "pod's neighbour entry for the gateway")
	})
}

func (s *session) checkDatapath(ep store.Endpoint) error {
	in, out := s.dp.linkPins(ep.HostIfName)
	// from_container must run before any chained plugin's program.
	if err := tcx.VerifyFirst(in, ep.HostIfIndex, tcx.Ingress); err != nil {
		return fmt.Errorf("program attachment: %w", err)
	}
	if err := tcx.Verify(out, ep.HostIfIndex); err != nil {
		return fmt.Errorf("program attachment: %w", err)
	}
	info, err := s.dp.endpoints.Get(ep.IPv4)
	if err != nil {
		return fmt.Errorf("endpoint map has no entry for %s", ep.IPv4)
	}
	want := newEndpointRef(ep.HostIfName, ep.HostIfIndex, ep.ID, ep.IPv4, mustMAC(ep.PodMAC), mustMAC(ep.HostMAC)).info
	if info != want {
		return fmt.Errorf("endpoint map entry for %s is %+v, want %+v", ep.IPv4, info, want)
	}
	return nil
}

func hasAddr(addrs []netlink.Addr, ip netip.Addr) bool {
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if a.IP.Equal(ip.AsSlice()) && ones == 32 {
			return true
		}
	}
	return false
}

// hasLinkRoute: a scope-link /32 route to ip.
func hasLinkRoute(routes []netlink.Route, ip netip.Addr) bool {
	for _, r := range routes {
		if r.Dst != nil && r.Dst.IP.Equal(ip.AsSlice()) && r.Scope == netlink.SCOPE_LINK {
			if ones, bits := r.Dst.Mask.Size(); ones == 32 && bits == 32 {
				return true
			}
		}
	}
	return false
}

func hasDefaultVia(routes []netlink.Route, gw netip.Addr) bool {
	for _, r := range routes {
		isDefault := r.Dst == nil || r.Dst.IP.IsUnspecified() && len(r.Dst.Mask) > 0 && r.Dst.Mask[0] == 0
		if isDefault && r.Gw.Equal(gw.AsSlice()) {
			return true
		}
	}
	return false
}

func mustMAC(s string) net.HardwareAddr {
	m, _ := net.ParseMAC(s)
	return m
}
