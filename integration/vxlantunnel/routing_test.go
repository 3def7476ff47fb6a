package vxlantunnel

import (
	"testing"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/integration/routing"
)

func TestCrossNode(t *testing.T) { routing.CrossNode(t, mode) }

func TestNodesJoinAndLeave(t *testing.T) {
	routing.NodesJoinAndLeave(t, mode, func(t *testing.T, c *routing.Cluster, gone, stays *harness.Pod) {
		// The node that left still tunnels to this one: its packets are
		// refused as coming from an unknown node.
		node := stays.Chain.Node
		before := node.CounterSet(t, plugin)
		routing.RequireNoPing(t, gone, stays)
		if d := node.CounterSet(t, plugin).Delta(t, before, "drop_unknown_peer"); d == 0 {
			t.Errorf("%s's drop_unknown_peer did not rise for a node it forgot", node.Name)
		}
	})
}

func TestCheckAndRepair(t *testing.T) { routing.CheckAndRepair(t, mode) }

func TestDelAndGC(t *testing.T) { routing.DelAndGC(t, mode) }

func TestVersions(t *testing.T) { routing.Versions(t, mode) }

func TestKernelKnobs(t *testing.T) { routing.KernelKnobs(t, mode, "braid_vxlan") }

func TestOutsideCluster(t *testing.T) { routing.OutsideCluster(t, mode) }
