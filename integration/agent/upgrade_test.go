package agent

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/cilium/ebpf"
)

// newVersion is what the replacing build of vxlan-tunnel says it is.
const newVersion = "v2-agent-upgrade-test"

// tunnelMapMax is TUNNEL_PEERS_MAX of bpf/vxlan_tunnel.c; the build tagged
// braid_layout_v2 (core/bpfobj/layout_v2.go) doubles it.
const tunnelMapMax = 4096

// TestAgentUpgrade replaces vxlan-tunnel's binary under a running agent
// (local datastore) with a build whose map layout grew, with UDP streams
// between pods on the node and across nodes. The agent must start a new
// server from the new binary (a new pid, the new version in
// braid_plugin_info) whose Reconcile migrates the map up, and no server of
// the old build may migrate it back; the streams barely notice.
func TestAgentUpgrade(t *testing.T) {
	harness.RequireRoot(t, "go", "ping")
	repo, err := harness.Repo()
	if err != nil {
		t.Fatal(err)
	}
	v2 := t.TempDir()
	build := exec.Command("go", "build", "-tags", "braid_layout_v2",
		"-ldflags", "-X github.com/braid-cni/braid/core/plugin.stampedVersion="+newVersion,
		"-o", filepath.Join(v2, "vxlan-tunnel"), "./plugins/vxlan-tunnel")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build vxlan-tunnel with braid_layout_v2: %v\n%s", err, out)
	}

	c := &cluster{topo: harness.New(t), repo: repo, spawn: newSpawner(t)}
	n1, n2 := c.topo.AddNode(t), c.topo.AddNode(t)
	harness.Mesh(t, n1, n2)
	// n1's plugins in a folder of its own, replaced under its agent.
	n := &node{Node: n1, bin: t.TempDir()}
	for _, p := range []string{"veth-ebpf", "vxlan-tunnel"} {
		if err := harness.InstallBinary(harness.RepoBinary(t, p), n.bin, p); err != nil {
			t.Fatal(err)
		}
	}
	n.chain = n1.Conflist(t, "vxlan.conflist").WithCNIPath(n.bin)
	c2 := n2.Conflist(t, "vxlan.conflist")
	c2.RequireSync(t)
	c.startAgentWith(t, n, "--datastore", "local", "--resync-interval", "1s", "--gc-interval", "1s")
	waitFor(t, 10*time.Second, "n1's agent healthy", func() error {
		if code, body, err := n.httpGet("/healthz"); err != nil || code != 200 {
			return fmt.Errorf("/healthz %d %s %v", code, body, err)
		}
		return nil
	}, nil)

	a1, b1, a2 := n.chain.AddPod(t, "a1"), n.chain.AddPod(t, "b1"), c2.AddPod(t, "a2")
	for _, p := range [][2]*harness.Pod{{a1, a2}, {a2, a1}, {b1, a1}} {
		if err := p[0].Ping(p[1].IP); err != nil {
			t.Fatal(err)
		}
	}
	const every = 5 * time.Millisecond
	streams := map[string]*harness.UDPStream{
		"a1->a2 (across nodes)": a1.StartUDPStream(t, a2.NS, a2.IP, every),
		"a2->a1 (across nodes)": a2.StartUDPStream(t, a1.NS, a1.IP, every),
		"b1->a1 (same node)":    b1.StartUDPStream(t, a1.NS, a1.IP, every),
	}
	time.Sleep(300 * time.Millisecond)

	old := n.pluginPid(t, "vxlan-tunnel")
	if old == 0 {
		t.Fatal("no vxlan-tunnel server under n1's agent")
	}
	if got := tunnelMapCapacity(t, n1); got != tunnelMapMax {
		t.Fatalf("tunnel_map holds %d entries before the upgrade, want %d", got, tunnelMapMax)
	}
	if err := harness.InstallBinary(filepath.Join(v2, "vxlan-tunnel"), n.bin, "vxlan-tunnel"); err != nil {
		t.Fatal(err)
	}
	installed := time.Now()
	waitFor(t, 10*time.Second, "a vxlan-tunnel server of the new binary", func() error {
		if pid := n.pluginPid(t, "vxlan-tunnel"); pid == 0 || pid == old {
			return fmt.Errorf("server pid %d (was %d)", pid, old)
		}
		return nil
	}, nil)
	t.Logf("new vxlan-tunnel server %v after the binary was replaced", time.Since(installed).Round(time.Millisecond))
	waitFor(t, 5*time.Second, "the new version in braid_plugin_info", func() error {
		for _, mt := range n.scrape(t)["braid_plugin_info"].GetMetric() {
			for _, l := range mt.GetLabel() {
				if hasLabel(mt, "plugin", "vxlan-tunnel") && l.GetName() == "version" && strings.HasPrefix(l.GetValue(), newVersion) {
					return nil
				}
			}
		}
		return fmt.Errorf("not yet")
	}, nil)
	waitFor(t, 5*time.Second, "the new server's Reconcile to migrate tunnel_map", func() error {
		if got := tunnelMapCapacity(t, n1); got != 2*tunnelMapMax {
			return fmt.Errorf("tunnel_map holds %d entries", got)
		}
		return nil
	}, nil)

	// Reconciles and GCs keep coming (every second): none shrinks it back.
	late := n.chain.AddPod(t, "late") // a CNI call of the new build
	time.Sleep(3 * time.Second)
	if got := tunnelMapCapacity(t, n1); got != 2*tunnelMapMax {
		t.Errorf("tunnel_map holds %d entries 3s after the upgrade, want %d: an old server migrated it back", got, 2*tunnelMapMax)
	}
	if v := value(n.scrape(t), "braid_plugin_restarts_total", "plugin", "vxlan-tunnel"); v != 1 {
		t.Errorf("braid_plugin_restarts_total{vxlan-tunnel} = %v, want 1", v)
	}
	for name, s := range streams {
		st := s.Stop()
		t.Logf("FIGURE agent upgrade stream %s: %s", name, st)
		if st.Received == 0 || st.Lost > 5 {
			t.Errorf("stream %s: %s; want at most 5 lost", name, st)
		}
	}
	all := []*harness.Pod{a1, b1, a2, late}
	for _, p := range all {
		for _, q := range all {
			if p != q {
				if err := p.Ping(q.IP); err != nil {
					t.Errorf("%s -> %s after the upgrade: %v", p.Name, q.Name, err)
				}
			}
		}
	}
	if !n.running() {
		t.Error("the agent died during the upgrade")
	}
}

// tunnelMapCapacity is the max entries of vxlan-tunnel's pinned tunnel map.
func tunnelMapCapacity(t *testing.T, n *harness.Node) uint32 {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(n.PinPath("vxlan-tunnel", "tunnel_map"), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	return m.MaxEntries()
}
