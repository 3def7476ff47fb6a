package harness

// Cgroups of nodes, and socket clients that run in them.
//
// sock-lb's programs run for the sockets of the processes below its
// cgroupRoot. On a real node that is every process (the host's cgroup2
// root); here each node gets its own cgroup, <cgroup2>/bs-<topology>/<node>,
// and a pod's process is one started in the pod's netns AND the node's
// cgroup: a Probe (internal/sockprobe), which is the suite's test binary
// re-executed under nsenter, born in the cgroup (clone3 CLONE_INTO_CGROUP).
// A suite using probes calls sockprobe.Main first thing in its TestMain.

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/braid-cni/braid/internal/sockprobe"
	"github.com/braid-cni/braid/internal/testenv"
	"golang.org/x/sys/unix"
)

// cgroupPrefix starts the name of the cgroup folder of every topology.
const cgroupPrefix = "bs-"

// cgroupsMade are the topology cgroup folders this process made (and
// registered the removal of).
var cgroupsMade sync.Map

// Cgroup is the node's cgroup v2 directory, <cgroup2>/bs-<topology>/<node>:
// made on first use (a crashed run's leftover of the topology's folder is
// removed first) and removed, with every process still in it, when t ends.
// Point sock-lb's cgroupRoot at it with SockLB.
func (n *Node) Cgroup(t testing.TB) string {
	t.Helper()
	root := testenv.Cgroup2()
	if root == "" {
		testenv.Unavailable(t, "sock-lb tests need a cgroup v2 mount (/sys/fs/cgroup/unified or /sys/fs/cgroup)")
	}
	topoDir := filepath.Join(root, cgroupPrefix+n.topo.Name)
	if _, loaded := cgroupsMade.LoadOrStore(topoDir, true); !loaded {
		if err := testenv.RemoveCgroup(topoDir); err != nil {
			t.Fatalf("remove leftover cgroups: %v", err)
		}
		if err := os.Mkdir(topoDir, 0o755); err != nil {
			cgroupsMade.Delete(topoDir)
			testenv.Unavailable(t, "cannot make cgroup %s: %v", topoDir, err)
		}
		t.Cleanup(func() {
			cgroupsMade.Delete(topoDir)
			if err := testenv.RemoveCgroup(topoDir); err != nil {
				t.Errorf("remove cgroups: %v", err)
			}
		})
	}
	dir := filepath.Join(topoDir, n.Name)
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		t.Fatalf("make cgroup %s: %v", dir, err)
	}
	return dir
}

// SockLB is the Edit that points the chain's sock-lb at the node's cgroup,
// with more sock-lb keys from kv (such as hostNamespaceOnly).
func (n *Node) SockLB(t testing.TB, kv map[string]any) Edit {
	t.Helper()
	keys := map[string]any{"cgroupRoot": n.Cgroup(t)}
	for k, v := range kv {
		keys[k] = v
	}
	return PluginKeysFor("sock-lb", keys)
}

// PluginKeysFor sets keys on the list's plugins of type typ only; a nil
// value deletes the key.
func PluginKeysFor(typ string, kv map[string]any) Edit {
	return func(list map[string]any) {
		plugins, _ := list["plugins"].([]any)
		for _, p := range plugins {
			m, ok := p.(map[string]any)
			if !ok || m["type"] != typ {
				continue
			}
			for k, v := range kv {
				if v == nil {
					delete(m, k)
				} else {
					m[k] = v
				}
			}
		}
	}
}

// WithoutPlugins drops the plugins of the given types from the list.
func WithoutPlugins(types ...string) Edit {
	return func(list map[string]any) {
		plugins, _ := list["plugins"].([]any)
		kept := []any{}
		for _, p := range plugins {
			m, _ := p.(map[string]any)
			drop := false
			for _, typ := range types {
				drop = drop || (m != nil && m["type"] == typ)
			}
			if !drop {
				kept = append(kept, p)
			}
		}
		list["plugins"] = kept
	}
}

// Probe starts a socket client (see internal/sockprobe) in ns's network
// namespace (a pod's, or the node's own) and in the node's cgroup, as a
// process of a pod on that node; it is stopped when t ends.
func (n *Node) Probe(t testing.TB, ns *NS) *sockprobe.Probe {
	t.Helper()
	RequireRoot(t, "nsenter")
	cg := n.Cgroup(t)
	fd, err := unix.Open(cg, unix.O_DIRECTORY|unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open cgroup %s: %v", cg, err)
	}
	defer unix.Close(fd) // the child has it once started
	cmd, err := sockprobe.Command("nsenter", "--net="+ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	p, err := sockprobe.Start(cmd)
	if err != nil {
		t.Fatalf("probe in %s, cgroup %s: %v", ns, cg, err)
	}
	t.Cleanup(p.Stop)
	return p
}

// ProbeDo runs req on p and fails t if the probe could not run it (failed
// socket calls are results, not failures).
func ProbeDo(t testing.TB, p *sockprobe.Probe, req sockprobe.Request) []sockprobe.Result {
	t.Helper()
	resp, err := p.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Results
}

// ServeTCP listens on addr (such as ":8080") inside ns and greets every
// connection with name, then echoes it (sockprobe.ServeTCP), until t ends.
func (ns *NS) ServeTCP(t testing.TB, addr, name string) netip.AddrPort {
	t.Helper()
	l := ns.Listen(t, addr)
	go sockprobe.ServeTCP(l, name)
	return unmap(l.Addr().(*net.TCPAddr).AddrPort())
}

// ServeUDP binds addr inside ns and answers every datagram with name
// (sockprobe.ServeUDP), until t ends.
func (ns *NS) ServeUDP(t testing.TB, addr, name string) netip.AddrPort {
	t.Helper()
	c := ns.ListenUDP(t, addr)
	go sockprobe.ServeUDP(c, name)
	return unmap(c.LocalAddr().(*net.UDPAddr).AddrPort())
}

// Tally counts probe results by the server's answer; failures count under
// "!" and the errno's name ("!ECONNREFUSED").
func Tally(rs []sockprobe.Result) map[string]int {
	m := map[string]int{}
	for _, r := range rs {
		if r.Err != "" {
			m["!"+r.Err]++
		} else {
			m[r.Reply]++
		}
	}
	return m
}
