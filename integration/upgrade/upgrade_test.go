// Package upgrade replaces braid's plugin binaries under running pods with
// a newer build whose map layout changed, node by node, with traffic
// flowing, and checks that the maps were migrated rather than wiped and
// that `braid sync` moves every link to the new programs in place.
//
// The newer build is the same source built with the tag braid_layout_v2
// (core/bpfobj/layout_v2.go): every pinned private map that keeps entries
// across releases holds twice the entries, as a release that raises a
// map's capacity would, so that the running build's pinned maps no longer
// fit and must be migrated. The test builds it with `go build`.
package upgrade

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/integration/harness"
	"github.com/cilium/ebpf"
)

// plugins of chain-configs/vxlan.conflist.
var plugins = []string{"veth-ebpf", "vxlan-tunnel"}

// growth mirrors core/bpfobj.LayoutGrowth (a constant of the tagged build).
const growth = 2

// buildV2 builds the plugins with the braid_layout_v2 tag into a folder.
func buildV2(t *testing.T) string {
	t.Helper()
	harness.RequireRoot(t, "go")
	repo, err := harness.Repo()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, p := range plugins {
		cmd := exec.Command("go", "build", "-tags", "braid_layout_v2", "-o", filepath.Join(dir, p), "./plugins/"+p)
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s with braid_layout_v2: %v\n%s", p, err, out)
		}
	}
	return dir
}

// installed copies the repository's current plugins into a CNI folder of
// the node's own, and returns the folder.
func installed(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range plugins {
		if err := harness.InstallBinary(harness.RepoBinary(t, p), dir, p); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestUpgradeUnderTraffic: two nodes (vxlan) run pods with UDP streams
// between them (across nodes both ways, and within node 1) on the current
// build. Node 1 is upgraded first: new binaries copied over the old ones, a
// pod added (the first call of the new build migrates the maps; existing
// pods keep the old programs and their old maps meanwhile), then `braid
// sync` moves every link to the new programs. Then node 2, the same way.
// The streams may lose a few datagrams at most; the migrated maps keep
// their entries in the new layout; every pod keeps working, old and new.
func TestUpgradeUnderTraffic(t *testing.T) {
	v2 := buildV2(t)
	topo := harness.New(t)
	n1, n2 := topo.AddNode(t), topo.AddNode(t)
	harness.Mesh(t, n1, n2)
	bins := map[*harness.Node]string{n1: installed(t), n2: installed(t)}
	chains := map[*harness.Node]*harness.Chain{}
	for n, dir := range bins {
		chains[n] = n.Conflist(t, "vxlan.conflist", harness.CNIVersion("1.1.0")).WithCNIPath(dir)
		if out, err := chains[n].SyncWith(t); err != nil {
			t.Fatalf("sync %s: %v\n%s", n.Name, err, out)
		}
	}
	a1, b1, a2 := chains[n1].AddPod(t, "a1"), chains[n1].AddPod(t, "b1"), chains[n2].AddPod(t, "a2")
	for _, p := range [][2]*harness.Pod{{a1, a2}, {a1, b1}} {
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

	var added []*harness.Pod
	for _, n := range []*harness.Node{n1, n2} {
		c := chains[n]
		old := attached(t, n, a1, a2)
		tunnelBefore := tunnelEntries(t, n)
		if got := maxEntries(t, n, "tunnel_map"); got != tunnelMapMax {
			t.Fatalf("%s: tunnel_map holds %d entries before the upgrade, want %d", n.Name, got, tunnelMapMax)
		}
		epsBefore := endpointEntries(t, n)

		for _, p := range plugins {
			if err := harness.InstallBinary(filepath.Join(v2, p), bins[n], p); err != nil {
				t.Fatal(err)
			}
		}
		// The first call of the new build migrates the maps.
		p := c.AddPod(t, "new"+n.Name)
		added = append(added, p)
		if got := maxEntries(t, n, "tunnel_map"); got != tunnelMapMax*growth {
			t.Errorf("%s: tunnel_map holds %d entries after the first new call, want %d", n.Name, got, tunnelMapMax*growth)
		}
		if got := tunnelEntries(t, n); !slices.Equal(got, tunnelBefore) {
			t.Errorf("%s: tunnel_map %v after migration, was %v", n.Name, got, tunnelBefore)
		}
		out, err := c.SyncWith(t)
		if err != nil {
			t.Fatalf("sync after upgrading %s: %v\n%s", n.Name, err, out)
		}
		// vxlan-tunnel's maps were migrated: its programs must be new ones,
		// loaded against them. veth-ebpf's maps did not change, so its
		// programs (verified once per build and node, core/bpfobj) may stay.
		now := attached(t, n, a1, a2)
		for where, ids := range old {
			if len(now[where]) != len(ids) {
				t.Errorf("%s %s: programs %v after sync, were %v", n.Name, where, now[where], ids)
				continue
			}
			for j, id := range ids {
				if now[where][j] == id && isVXLANProgram(where, j) {
					t.Errorf("%s %s: vxlan-tunnel program %d is still the old build's after sync", n.Name, where, id)
				}
			}
		}
		requireCurrentMaps(t, n, a1, a2)
		if got := endpointEntries(t, n); !containsAll(got, epsBefore) {
			t.Errorf("%s: endpoint map %v after the upgrade, had %v", n.Name, got, epsBefore)
		}
		if got := tunnelEntries(t, n); !slices.Equal(got, tunnelBefore) {
			t.Errorf("%s: tunnel_map %v after sync, was %v", n.Name, got, tunnelBefore)
		}
		time.Sleep(300 * time.Millisecond)
	}

	for name, s := range streams {
		st := s.Stop()
		t.Logf("FIGURE upgrade stream %s: %s", name, st)
		if st.Received == 0 || st.Lost > 5 {
			t.Errorf("stream %s: %s; want at most 5 lost", name, st)
		}
	}
	// Old and new pods, on old and new programs' maps, all talk.
	all := append([]*harness.Pod{a1, b1, a2}, added...)
	for _, p := range all {
		for _, q := range all {
			if p != q {
				if err := p.Ping(q.IP); err != nil {
					t.Errorf("%s -> %s after the upgrade: %v", p.Name, q.Name, err)
				}
			}
		}
		if err := p.Check(); err != nil {
			t.Errorf("CHECK of %s after the upgrade: %v", p.Name, err)
		}
	}
	for _, p := range all {
		if err := p.Del(); err != nil {
			t.Errorf("DEL of %s after the upgrade: %v", p.Name, err)
		}
	}
	for _, n := range []*harness.Node{n1, n2} {
		if err := chains[n].GC(); err != nil {
			t.Errorf("GC on %s: %v", n.Name, err)
		}
		n.RequireNoLeaks(t)
	}
}

// attached is the program IDs on the pods' host veths (ingress and
// egress) and on the VXLAN device of n.
func attached(t *testing.T, n *harness.Node, pods ...*harness.Pod) map[string][]ebpf.ProgramID {
	t.Helper()
	out := map[string][]ebpf.ProgramID{}
	ids := func(ps []harness.AttachedProgram) []ebpf.ProgramID {
		var r []ebpf.ProgramID
		for _, p := range ps {
			r = append(r, p.ID)
		}
		return r
	}
	for _, p := range pods {
		if p.Chain.Node != n {
			continue
		}
		host, _ := p.HostIf()
		out[host+" ingress"] = ids(n.TCXPrograms(t, host, true))
		out[host+" egress"] = ids(n.TCXPrograms(t, host, false))
	}
	out["braid_vxlan ingress"] = ids(n.TCXPrograms(t, "braid_vxlan", true))
	out["braid_vxlan egress"] = ids(n.TCXPrograms(t, "braid_vxlan", false))
	return out
}

func pinnedMap(t *testing.T, n *harness.Node, name string) *ebpf.Map {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(n.PinPath("vxlan-tunnel", name), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// tunnelMapMax is TUNNEL_PEERS_MAX of bpf/vxlan_tunnel.c.
const tunnelMapMax = 4096

func maxEntries(t *testing.T, n *harness.Node, name string) uint32 {
	t.Helper()
	m := pinnedMap(t, n, name)
	defer m.Close()
	return m.MaxEntries()
}

// tunnelEntries lists tunnel_map as "cidr -> node".
func tunnelEntries(t *testing.T, n *harness.Node) []string {
	t.Helper()
	m := pinnedMap(t, n, "tunnel_map")
	defer m.Close()
	var out []string
	key := make([]byte, m.KeySize())
	val := make([]byte, m.ValueSize())
	it := m.Iterate()
	for it.Next(&key, &val) {
		ip := maps.WordIPv4(binary.NativeEndian.Uint32(key[4:]))
		out = append(out, ip.String()+"/"+strconv.Itoa(int(binary.NativeEndian.Uint32(key[:4])))+" -> "+
			maps.WordIPv4(binary.NativeEndian.Uint32(val[:4])).String())
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func endpointEntries(t *testing.T, n *harness.Node) []string {
	t.Helper()
	var entries []struct {
		IP      string `json:"ip"`
		Ifindex int    `json:"ifindex"`
	}
	n.BraidJSON(t, &entries, "bpf", "endpoint", "list")
	var out []string
	for _, e := range entries {
		out = append(out, e.IP)
	}
	slices.Sort(out)
	return out
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// isVXLANProgram says whether the j-th program at where is vxlan-tunnel's:
// on a pod's host veth, ingress runs veth-ebpf's then vxlan-tunnel's, egress
// veth-ebpf's alone; on the VXLAN device, all are vxlan-tunnel's.
func isVXLANProgram(where string, j int) bool {
	if strings.HasPrefix(where, "braid_vxlan ") {
		return true
	}
	return strings.HasSuffix(where, " ingress") && j == 1
}

// requireCurrentMaps checks that every program attached on n's pods' host
// veths and VXLAN device uses the maps pinned now (migrated or not), never
// an older copy of one: a map a program uses that has the name of a pinned
// map must be that pinned map.
func requireCurrentMaps(t *testing.T, n *harness.Node, pods ...*harness.Pod) {
	t.Helper()
	pinned := map[string][]ebpf.MapID{} // name -> ids (each plugin has its "counters")
	err := filepath.WalkDir(n.BPFRoot, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".debug") {
			return err
		}
		m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			return nil // a link or a program
		}
		defer m.Close()
		info, err := m.Info()
		if err != nil {
			return err
		}
		id, _ := info.ID()
		pinned[info.Name] = append(pinned[info.Name], id)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	hooks := [][2]string{{"braid_vxlan", "ingress"}, {"braid_vxlan", "egress"}}
	for _, p := range pods {
		if p.Chain.Node == n {
			host, _ := p.HostIf()
			hooks = append(hooks, [2]string{host, "ingress"}, [2]string{host, "egress"})
		}
	}
	for _, h := range hooks {
		for _, ap := range n.TCXPrograms(t, h[0], h[1] == "ingress") {
			prog, err := ebpf.NewProgramFromID(ap.ID)
			if err != nil {
				t.Fatal(err)
			}
			info, err := prog.Info()
			prog.Close()
			if err != nil {
				t.Fatal(err)
			}
			ids, _ := info.MapIDs()
			for _, id := range ids {
				m, err := ebpf.NewMapFromID(id)
				if err != nil {
					t.Fatal(err)
				}
				mi, err := m.Info()
				m.Close()
				if err != nil {
					t.Fatal(err)
				}
				if want, ok := pinned[mi.Name]; ok && !slices.Contains(want, id) {
					t.Errorf("%s %s %s: %s uses map %s %d, not the pinned one (%v)", n.Name, h[0], h[1], ap.Name, mi.Name, id, want)
				}
			}
		}
	}
}
