package nativeroute

import (
	"net"
	"net/netip"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/integration/routing"
)

func TestCrossNode(t *testing.T) { routing.CrossNode(t, mode) }

func TestNodesJoinAndLeave(t *testing.T) { routing.NodesJoinAndLeave(t, mode, nil) }

func TestCheckAndRepair(t *testing.T) { routing.CheckAndRepair(t, mode) }

func TestDelAndGC(t *testing.T) { routing.DelAndGC(t, mode) }

func TestVersions(t *testing.T) { routing.Versions(t, mode) }

func TestKernelKnobs(t *testing.T) { routing.KernelKnobs(t, mode, harness.NodeDevice) }

func prefixNet(n *harness.Node) *net.IPNet {
	return &net.IPNet{IP: n.PodCIDR.Addr().AsSlice(), Mask: net.CIDRMask(n.PodCIDR.Bits(), 32)}
}

func netipPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestOutsideCluster(t *testing.T) { routing.OutsideCluster(t, mode) }
