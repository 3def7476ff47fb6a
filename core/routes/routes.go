// Package routes keeps the routes braid owns in line with what is desired.
// braid tags its routes with its own protocol number, so it never touches a
// route someone else installed.
package routes

import (
	"fmt"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// Protocol tags every route braid installs. RTPROT values above 4 are for
// routing daemons; 157 is one /etc/iproute2/rt_protos gives to none (braid
// used 189 before, which is rip's).
const Protocol netlink.RouteProtocol = 157

// LegacyProtocol is the number braid tagged its routes with before
// Protocol: such routes are still braid's, and Sync retags them.
const LegacyProtocol netlink.RouteProtocol = 189

// IsBraid reports whether a route's protocol says braid installed it.
func IsBraid(p netlink.RouteProtocol) bool { return p == Protocol || p == LegacyProtocol }

// Sync makes braid's IPv4 routes through link exactly want (Protocol is set
// on each), and returns what it changed.
func Sync(link netlink.Link, want []netlink.Route) ([]string, error) {
	have, err := Owned(link)
	if err != nil {
		return nil, err
	}
	var changes []string
	wanted := map[string]bool{}
	for _, r := range want {
		r.Protocol = Protocol
		wanted[r.Dst.String()] = true
		if same(have, r) { // same destination, gateway, scope and protocol
			continue
		}
		if err := netlink.RouteReplace(&r); err != nil {
			return changes, fmt.Errorf("route %s: %w", describe(r), err)
		}
		changes = append(changes, "route "+describe(r))
	}
	for _, r := range have {
		if !wanted[r.Dst.String()] {
			if err := netlink.RouteDel(&r); err != nil {
				return changes, fmt.Errorf("delete route %s: %w", describe(r), err)
			}
			changes = append(changes, "deleted route "+describe(r))
		}
	}
	return changes, nil
}

// Owned lists braid's IPv4 routes through link, by either protocol.
func Owned(link netlink.Link) ([]netlink.Route, error) {
	all, err := netlinksafe.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{LinkIndex: link.Attrs().Index}, netlink.RT_FILTER_OIF)
	if err != nil {
		return nil, fmt.Errorf("list routes on %s: %w", link.Attrs().Name, err)
	}
	var owned []netlink.Route
	for _, r := range all {
		if IsBraid(r.Protocol) {
			owned = append(owned, r)
		}
	}
	return owned, nil
}

func same(have []netlink.Route, r netlink.Route) bool {
	for _, h := range have {
		if h.Dst.String() == r.Dst.String() && h.Gw.Equal(r.Gw) && h.Scope == r.Scope && h.Protocol == r.Protocol {
			return true
		}
	}
	return false
}

func describe(r netlink.Route) string {
	if r.Gw != nil {
		return fmt.Sprintf("%s via %s", r.Dst, r.Gw)
	}
	return r.Dst.String()
}
