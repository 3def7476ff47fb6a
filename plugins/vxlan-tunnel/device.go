package main

import (
	"fmt"
	"net"

	"github.com/braid-cni/braid/core/notfound"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// ensureDevice makes the node's collect_md VXLAN device exist with the given
// port and MTU, and be up. A device of that name with other settings is
// replaced: the overlay cannot work through it.
func ensureDevice(name string, port, mtu int) (link netlink.Link, changed string, err error) {
	l, err := netlinksafe.LinkByName(name)
	if err == nil {
		if vx, ok := l.(*netlink.Vxlan); ok && vx.FlowBased && vx.Port == port {
			return l, "", fixDevice(l, mtu)
		}
		if err := netlink.LinkDel(l); err != nil {
			return nil, "", fmt.Errorf("replace %s: %w", name, err)
		}
		changed = "replaced "
	} else if !notfound.Is(err) {
		return nil, "", fmt.Errorf("VXLAN device %s: %w", name, err)
	}
	vx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu},
		FlowBased: true,
		Port:      port,
	}
	if err := netlink.LinkAdd(vx); err != nil {
		return nil, "", fmt.Errorf("create VXLAN device %s: %w", name, err)
	}
	if l, err = netlinksafe.LinkByName(name); err != nil {
		return nil, "", err
	}
	// No ARP on the overlay: the programs address every packet themselves.
	if err := netlink.LinkSetARPOff(l); err != nil {
		return nil, "", err
	}
	return l, fmt.Sprintf("%screated VXLAN device %s (port %d, mtu %d)", changed, name, port, mtu), fixDevice(l, mtu)
}

func fixDevice(l netlink.Link, mtu int) error {
	if l.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set %s mtu %d: %w", l.Attrs().Name, mtu, err)
		}
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return netlink.LinkSetUp(l)
	}
	return nil
}
