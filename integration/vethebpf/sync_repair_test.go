package vethebpf

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestSyncRestoresNodeSide breaks the node's side of a pod (its /32 route,
// its neighbour entry, the host veth down): `braid sync` puts all back, and
// the node reaches the pod again.
func TestSyncRestoresNodeSide(t *testing.T) {
	n, c := setup(t)
	p := c.AddPod(t, "p")
	hostIf, _ := p.HostIf()
	inNetns(t, n.NS, func() error {
		l, err := netlink.LinkByName(hostIf)
		if err != nil {
			return err
		}
		if err := netlink.RouteDel(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: &net.IPNet{IP: p.IP.AsSlice(), Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
			return err
		}
		if err := delNeigh(hostIf, p.IP.AsSlice()); err != nil {
			return err
		}
		return netlink.LinkSetDown(l)
	})
	if err := n.NS.Ping(p.IP); err == nil {
		t.Fatal("the node still reaches the pod with its side broken")
	}

	out := c.RequireSync(t)
	if !strings.Contains(string(out), "node side restored") {
		t.Errorf("braid sync does not say it restored the node side:\n%s", out)
	}
	if err := n.NS.Ping(p.IP); err != nil {
		t.Errorf("node to pod after sync: %v", err)
	}
	if err := p.Check(); err != nil {
		t.Errorf("CHECK after sync: %v", err)
	}
	if err := p.Del(); err != nil {
		t.Fatal(err)
	}
	n.RequireClean(t)
}

// TestStatusReportsGoneHostVeth: an endpoint whose host veth was deleted
// behind braid's back is a problem `braid status` names.
func TestStatusReportsGoneHostVeth(t *testing.T) {
	n, c := setup(t)
	p := c.AddPod(t, "p")
	hostIf, _ := p.HostIf()
	inNetns(t, n.NS, func() error {
		l, err := netlink.LinkByName(hostIf)
		if err != nil {
			return err
		}
		return netlink.LinkDel(l)
	})
	s := n.BraidStatus(t)
	if !strings.Contains(strings.Join(s.Problems, "\n"), "host veth "+hostIf+" is gone") {
		t.Errorf("braid status with %s gone: problems %q", hostIf, s.Problems)
	}
	if err := p.Del(); err != nil {
		t.Fatal(err)
	}
	n.RequireClean(t)
}

// TestFailedAddLeavesNoMount: an ADD on a node never initialized fails
// with 50 and mounts no bpffs at its bpfRoot.
func TestFailedAddLeavesNoMount(t *testing.T) {
	n := harness.New(t).AddNode(t)
	root := filepath.Join(t.TempDir(), "bpf")
	t.Cleanup(func() {
		if mounted(t, root) {
			_ = unix.Unmount(root, unix.MNT_DETACH)
		}
	})
	c := n.Conflist(t, conflist, harness.PluginKeys(map[string]any{"stateDir": t.TempDir(), "bpfRoot": root}))
	harness.RequireCNIError(t, c.NewPod(t, "p").Add(), types.ErrPluginNotAvailable, "not initialized")
	if mounted(t, root) {
		t.Errorf("a failed ADD left a bpffs mounted at %s", root)
	}
}

// mounted reports whether a filesystem is mounted at dir.
func mounted(t *testing.T, dir string) bool {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}
