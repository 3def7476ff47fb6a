package faults

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"golang.org/x/sys/unix"
)

// TestDatapathReboot takes node 1's datapath away under running pods, in
// both routing modes with a second node: every pin removed by hand, then
// the node's bpffs unmounted (a reboot of the datapath: all pins, maps and
// links gone, the store kept). One `braid sync` must bring everything back:
// the pods talk again through the eBPF path (its counters rise), CHECK
// passes and nothing is left over. After the unmount a pod is also added
// before the sync, as a runtime would right after a reboot.
func TestDatapathReboot(t *testing.T) {
	for _, mode := range routingModes {
		t.Run(mode.name, func(t *testing.T) {
			cl := twoNodes(t, mode.conflist)
			n1 := cl.n1
			a, b, r := cl.c1.AddPod(t, "a"), cl.c1.AddPod(t, "b"), cl.c2.AddPod(t, "r")
			pods := []*harness.Pod{a, b}
			requireEBPFPath(t, mode, n1, a, b, r)

			t.Run("pins removed by hand", func(t *testing.T) {
				entries, err := os.ReadDir(n1.BPFRoot)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range entries {
					if strings.HasSuffix(e.Name(), ".debug") {
						continue // the kernel's own (maps.debug, progs.debug)
					}
					if err := os.RemoveAll(filepath.Join(n1.BPFRoot, e.Name())); err != nil {
						t.Fatal(err)
					}
				}
				requireDetached(t, n1, a)
				cl.c1.RequireSync(t)
				requireRestored(t, mode, cl, pods, r)
			})

			t.Run("bpffs unmounted", func(t *testing.T) {
				if err := unix.Unmount(n1.BPFRoot, unix.MNT_DETACH); err != nil {
					t.Fatal(err)
				}
				requireDetached(t, n1, a)
				if s := n1.BraidStatus(t); s.BPFFSMounted {
					t.Errorf("braid status after the unmount: %+v", s)
				}
				// A pod added before anyone syncs: the plugins mount the
				// bpffs again and set up the node-wide parts they need.
				c := cl.c1.AddPod(t, "c")
				pingBoth(t, c, r)
				cl.c1.RequireSync(t)
				requireRestored(t, mode, cl, append(pods, c), r)
			})
		})
	}
}

// requireEBPFPath checks that a talks to b (same node) and r (node 2)
// through the eBPF programs: their counters on node n rise.
func requireEBPFPath(t *testing.T, mode routingPlugin, n *harness.Node, a, b, r *harness.Pod) {
	t.Helper()
	vb, rb := n.CounterSet(t, "veth-ebpf"), n.CounterSet(t, mode.name)
	pingBoth(t, a, b)
	pingBoth(t, a, r)
	a.RequireTCP(t, r.NS, r.IP)
	va, ra := n.CounterSet(t, "veth-ebpf"), n.CounterSet(t, mode.name)
	if d := va.Delta(t, vb, "redirect_peer"); d < 4 {
		t.Errorf("%s: veth-ebpf redirect_peer rose by %d, want at least 4 (two pings each way)", n.Name, d)
	}
	if d := mode.outDelta(t, ra, rb); d < 2 {
		t.Errorf("%s: %s %v rose by %d, want at least 2", n.Name, mode.name, mode.out, d)
	}
	if d := ra.Delta(t, rb, mode.in); d < 2 {
		t.Errorf("%s: %s %s rose by %d, want at least 2", n.Name, mode.name, mode.in, d)
	}
}

// requireDetached waits until the pod's host veth has no program left: the
// kernel releases links a little after their last pin goes.
func requireDetached(t *testing.T, n *harness.Node, p *harness.Pod) {
	t.Helper()
	host, _ := p.HostIf()
	deadline := time.Now().Add(10 * time.Second)
	for {
		in, out := n.TCXPrograms(t, host, true), n.TCXPrograms(t, host, false)
		if len(in)+len(out) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still has programs attached: ingress %v, egress %v", host, in, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// requireRestored checks node 1 after a sync: each pod's programs are back
// in chain order, CHECK passes, the pods talk through the eBPF path, and
// nothing is left over.
func requireRestored(t *testing.T, mode routingPlugin, cl *cluster, pods []*harness.Pod, remote *harness.Pod) {
	t.Helper()
	n := cl.n1
	for _, p := range pods {
		host, _ := p.HostIf()
		in, out := n.TCXPrograms(t, host, true), n.TCXPrograms(t, host, false)
		if len(in) != 2 || len(out) != 1 || in[0].Name != "from_container" {
			t.Errorf("%s (%s): ingress %v, egress %v; want veth-ebpf's and %s's from_container, and to_container",
				p.Name, host, in, out, mode.name)
		}
		if err := p.Check(); err != nil {
			t.Errorf("CHECK of %s: %v", p.Name, err)
		}
	}
	requireEBPFPath(t, mode, n, pods[0], pods[1], remote)
	for _, p := range pods {
		if err := p.Ping(remote.IP); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
	}
	n.RequireNoLeaks(t, pods...)
	if out := cl.c1.RequireSync(t); len(out) == 0 {
		t.Error("braid sync printed nothing")
	} else if s := string(out); containsChange(s) {
		t.Errorf("a second sync still changed something:\n%s", s)
	}
	t.Logf("FIGURE %s: %d pods restored by one braid sync, counters rose on the eBPF path, leaks found: 0",
		t.Name(), len(pods))
}

// containsChange reports whether braid sync's table lists anything but
// "in sync" rows.
func containsChange(table string) bool {
	lines := strings.Split(strings.TrimSpace(table), "\n")
	for _, l := range lines[1:] {
		if !strings.Contains(l, "in sync") {
			return true
		}
	}
	return false
}
