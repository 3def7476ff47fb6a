package nativeroute

import (
	"bufio"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/integration/routing"
	"github.com/vishvananda/netlink"
)

// legacyProtocol is the number braid tagged its routes with before (rip's).
const legacyProtocol = 189

// TestRouteProtocol: braid's routes carry a protocol number that
// /etc/iproute2/rt_protos gives to no daemon, and routes an older braid
// left with the old number (189) are still braid's: a sync deletes the one
// to a node that left and retags the one to a current peer.
func TestRouteProtocol(t *testing.T) {
	if named := rtProtos(t); named[int(harness.RouteProtocol)] != "" {
		t.Errorf("braid's route protocol %d is %q's in rt_protos", harness.RouteProtocol, named[int(harness.RouteProtocol)])
	}
	c := routing.NewCluster(t, mode, 2)
	n1, n2 := c.Nodes[0], c.Nodes[1]
	a, b := c.Chains[0].AddPod(t, "a"), c.Chains[1].AddPod(t, "b")

	stale := &net.IPNet{IP: net.IPv4(198, 19, 60, 0), Mask: net.CIDRMask(24, 32)}
	err := n1.Do(func() error {
		dev, err := netlink.LinkByName(harness.NodeDevice)
		if err != nil {
			return err
		}
		for _, dst := range []*net.IPNet{prefixNet(n2), stale} {
			r := &netlink.Route{LinkIndex: dev.Attrs().Index, Dst: dst, Gw: n2.IP.AsSlice(), Protocol: legacyProtocol}
			if err := netlink.RouteReplace(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	c.Chains[0].RequireSync(t)
	knows(t, n1, n2, true) // one route, with braid's current protocol
	var left []string
	err = n1.Do(func() error {
		routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: legacyProtocol}, netlink.RT_FILTER_PROTOCOL)
		for _, r := range routes {
			left = append(left, r.Dst.String())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("routes with the old protocol %d after sync: %v", legacyProtocol, left)
	}
	routing.RequirePing(t, a, b)
}

// rtProtos reads the names iproute2 gives protocol numbers.
func rtProtos(t *testing.T) map[int]string {
	t.Helper()
	f, err := os.Open("/etc/iproute2/rt_protos")
	if os.IsNotExist(err) {
		f, err = os.Open("/usr/share/iproute2/rt_protos")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	named := map[int]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if n, err := strconv.Atoi(fields[0]); err == nil {
			named[n] = fields[1]
		}
	}
	return named
}
