package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/braid-cni/braid/core/notfound"
	"github.com/braid-cni/braid/core/routes"
	"github.com/braid-cni/braid/core/store"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hostVethPrefix marks host-side veths this plugin owns (GC relies on it).
const hostVethPrefix = "brd"

// gatewayIP is the pod's default gateway: link-local, resolved by a
// permanent neighbour entry to the host veth's MAC, so no bridge and no
// proxy ARP are needed (the same trick Calico uses).
var gatewayIP = netip.MustParseAddr("169.254.1.1")

// hostVethName derives the host-side name from the attachment, so DEL and GC
// find it without any state.
func hostVethName(containerID, ifName string) string {
	return hostVethPrefix + store.AttachmentID(containerID, ifName)
}

// podLink is what ADD learns about the new interfaces.
type podLink struct {
	host    netlink.Link
	podMAC  net.HardwareAddr
	podName string
}

// createVeth makes the pair inside netns and moves the host end to the
// node's netns (the current one). A leftover host veth of the same name,
// from an earlier ADD of the same attachment, is replaced.
func createVeth(netns ns.NetNS, ifName, hostName string, mtu int) (*podLink, error) {
	if old, err := netlinksafe.LinkByName(hostName); err == nil {
		_ = netlink.LinkDel(old)
	}
	hostNS, err := ns.GetCurrentNS()
	if err != nil {
		return nil, err
	}
	defer hostNS.Close()

	out := &podLink{podName: ifName}
	err = netns.Do(func(ns.NetNS) error {
		if _, err := netlinksafe.LinkByName(ifName); err == nil {
			return fmt.Errorf("interface %q already exists in %s", ifName, netns.Path())
		} else if !notfound.Is(err) {
			return fmt.Errorf("interface %q in %s: %w", ifName, netns.Path(), err)
		}
		_, cont, err := ip.SetupVethWithName(ifName, hostName, mtu, "", hostNS)
		if err != nil {
			return err
		}
		out.podMAC = cont.HardwareAddr
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The host end sends no IPv6 either (router solicitations, MLD):
	// to_container drops IPv6, and would count each as a drop.
	if err := disableIPv6(hostName); err != nil {
		return nil, err
	}
	out.host, err = netlinksafe.LinkByName(hostName)
	return out, err
}

// disableIPv6 turns IPv6 off on ifName in the current netns: braid's
// datapath is IPv4-only. A kernel without IPv6 has nothing to turn off.
func disableIPv6(ifName string) error {
	_, err := sysctl.Sysctl(fmt.Sprintf("net/ipv6/conf/%s/disable_ipv6", ifName), "1")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("disable IPv6 on %s: %w", ifName, err)
	}
	return nil
}

// secondaryMetric is the metric of a secondary attachment's gateway route:
// the primary's (metric 0) stays the one the pod uses for 169.254.1.1.
const secondaryMetric = 100

// configurePod gives the pod its /32, the link-local gateway and, unless
// the attachment is secondary, the default route; it turns IPv6 off (the
// datapath is IPv4-only and drops it).
func configurePod(netns ns.NetNS, ifName string, addr netip.Addr, hostMAC net.HardwareAddr, secondary bool) error {
	return netns.Do(func(ns.NetNS) error {
		l, err := netlinksafe.LinkByName(ifName)
		if err != nil {
			return err
		}
		if err := disableIPv6(ifName); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", ifName, err)
		}
		if err := netlink.AddrReplace(l, &netlink.Addr{IPNet: hostPrefix(addr)}); err != nil {
			return fmt.Errorf("add %s to %s: %w", addr, ifName, err)
		}
		gw := net.IP(gatewayIP.AsSlice())
		if err := netlink.NeighSet(&netlink.Neigh{
			LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT, IP: gw, HardwareAddr: hostMAC,
		}); err != nil {
			return fmt.Errorf("gateway neighbour: %w", err)
		}
		gwRoute := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: hostPrefix(gatewayIP), Scope: netlink.SCOPE_LINK}
		if secondary {
			// A second route to the gateway, on this link: replacing
			// the primary's would move the pod's traffic here.
			gwRoute.Priority = secondaryMetric
			if err := netlink.RouteReplace(gwRoute); err != nil {
				return fmt.Errorf("gateway route: %w", err)
			}
			return nil
		}
		if err := netlink.RouteReplace(gwRoute); err != nil {
			return fmt.Errorf("gateway route: %w", err)
		}
		if err := netlink.RouteReplace(&netlink.Route{
			LinkIndex: l.Attrs().Index, Gw: gw, Dst: defaultRoute(),
		}); err != nil {
			return fmt.Errorf("default route: %w", err)
		}
		return nil
	})
}

// configureHost routes the pod address to its veth and pins the pod's MAC,
// so the node's stack reaches the pod without ARP.
func configureHost(host netlink.Link, addr netip.Addr, podMAC net.HardwareAddr) error {
	idx := host.Attrs().Index
	if err := netlink.RouteReplace(&netlink.Route{
		LinkIndex: idx, Dst: hostPrefix(addr), Scope: netlink.SCOPE_LINK, Protocol: routes.Protocol,
	}); err != nil {
		return fmt.Errorf("route to pod %s: %w", addr, err)
	}
	if err := netlink.NeighSet(&netlink.Neigh{
		LinkIndex: idx, State: netlink.NUD_PERMANENT, IP: addr.AsSlice(), HardwareAddr: podMAC,
	}); err != nil {
		return fmt.Errorf("pod neighbour: %w", err)
	}
	// Pods reach other nodes and the world through the node's stack.
	if _, err := sysctl.Sysctl("net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("enable ip_forward: %w", err)
	}
	return nil
}

// deleteHostVeth removes the pair by its host end; absent is fine.
func deleteHostVeth(name string) error {
	l, err := netlinksafe.LinkByName(name)
	if notfound.Is(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("host veth %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return err
	}
	return nil
}

// nodeMTU is the MTU of the node's device, the default pod MTU.
func nodeMTU(device string) (int, error) {
	l, err := netlinksafe.LinkByName(device)
	if err != nil {
		return 0, fmt.Errorf("node device %q: %w", device, err)
	}
	return l.Attrs().MTU, nil
}

func hostPrefix(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
}

func defaultRoute() *net.IPNet {
	return &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
}
