// Package harness builds the integration suites' test networks: per test, an
// underlay bridge in its own network namespace and "nodes" joined to it, each
// a network namespace with its own state directory and bpffs, initialized
// with the real `braid` binary; pods attached through libcni exactly as a
// runtime does; and in-process traffic helpers that run inside namespaces.
//
// Everything a test makes is named after the test (see Topology.Name) and
// removed by t.Cleanup, even when the test fails; leftovers of a crashed
// earlier run with the same names are removed first. Only addresses from
// 198.18.0.0/15 are used, and no namespace has a route out of the topology.
//
// A suite reads like what a user does on a node:
//
//	n := harness.New(t).AddNode(t)               // netns, bpffs, braid node init
//	c := n.Conflist(t, "node-local.conflist")    // the chain, pointed at n
//	a, b := c.AddPod(t, "a"), c.AddPod(t, "b")   // ADD through libcni
//	if err := a.Ping(b.IP); err != nil { … }
//	a.RequireTCP(t, b.NS, b.IP)
//	harness.RequireCNIError(t, a.Check(), 999, "default route")
//	n.RequireClean(t)                            // after DEL: nothing leaked
package harness

import (
	"bufio"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// stateRoot holds every topology's files: /run/braid-test/<topology>/.
const stateRoot = "/run/braid-test"

// bridgeName is the underlay bridge, alone in the underlay namespace.
const bridgeName = "br0"

// Topology is one test's network.
type Topology struct {
	// Name is "bt" and 8 hex digits hashed from the test's package and
	// name: short, and stable so that a rerun finds a crashed run's
	// leftovers. Every namespace of the topology is named "<Name>-…".
	Name     string
	Dir      string // stateRoot/<Name>
	Underlay *NS    // holds the bridge the nodes' eth0 are attached to
	Nodes    []*Node
}

// New builds an empty topology (just the underlay bridge) for t and
// registers its teardown.
func New(t *testing.T) *Topology {
	t.Helper()
	RequireRoot(t, "ping")
	requireBinary(t, "braid")
	// go test runs each package's binary in the package's folder, in
	// parallel with other packages: the folder keeps suites with equally
	// named tests apart.
	pkgDir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	h := fnv.New32a()
	h.Write([]byte(pkgDir + "\x00" + t.Name()))
	name := fmt.Sprintf("bt%08x", h.Sum32())
	topo := &Topology{Name: name, Dir: filepath.Join(stateRoot, name)}
	if err := topo.teardown(); err != nil {
		t.Fatalf("remove leftovers of an earlier run: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range topo.Nodes {
				n.logTail(t)
			}
		}
		if err := topo.teardown(); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
	if err := os.MkdirAll(topo.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if topo.Underlay, err = createNS(name + "-u"); err != nil {
		t.Fatal(err)
	}
	err = topo.Underlay.Do(func() error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge: %w", err)
		}
		return netlink.LinkSetUp(br)
	})
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// teardown removes everything named after the topology: bpffs mounts,
// namespaces (which takes their devices with them) and files.
func (topo *Topology) teardown() error {
	var errs []error
	mounts, err := mountsUnder(topo.Dir)
	errs = append(errs, err)
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	names, err := filepath.Glob(filepath.Join(netnsDir, topo.Name+"-*"))
	errs = append(errs, err)
	for _, p := range names {
		errs = append(errs, deleteNS(p))
	}
	errs = append(errs, os.RemoveAll(topo.Dir))
	return errors.Join(errs...)
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out, sc.Err()
}

// AddNode adds node i = len(Nodes)+1: namespace "<topology>-n<i>" whose
// eth0 (198.18.0.i/24) is a veth to the underlay bridge, pod CIDR
// 198.19.i.0/24, its own state dir and bpffs, and `braid node init` done.
func (topo *Topology) AddNode(t *testing.T, opts ...NodeOption) *Node {
	t.Helper()
	var o nodeOptions
	for _, opt := range opts {
		opt(&o)
	}
	i := len(topo.Nodes) + 1
	if i > 250 {
		t.Fatal("a topology holds at most 250 nodes")
	}
	name := fmt.Sprintf("n%d", i)
	dir := filepath.Join(topo.Dir, name)
	n := &Node{
		Name:     name,
		IP:       netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}),
		PodCIDR:  netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i), 0}), 24),
		Dir:      dir,
		StateDir: filepath.Join(dir, "state"),
		BPFRoot:  filepath.Join(dir, "bpf"),
		LogFile:  filepath.Join(dir, "cni.log"),
		topo:     topo,
	}
	topo.Nodes = append(topo.Nodes, n)
	var err error
	if n.NS, err = createNS(topo.Name + "-" + name); err != nil {
		t.Fatal(err)
	}
	if err := n.plumb(topo.Underlay); err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	if err := os.MkdirAll(n.BPFRoot, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpffs", n.BPFRoot, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs on %s: %v", n.BPFRoot, err)
	}
	if o.noInit {
		return n
	}
	n.Braid(t, "node", "init", "--name", name, "--node-ip", n.IP.String(),
		"--pod-cidr", n.PodCIDR.String(), "--device", NodeDevice)
	return n
}

// NodeOption changes how AddNode makes a node.
type NodeOption func(*nodeOptions)

type nodeOptions struct{ noInit bool }

// WithoutInit leaves out `braid node init`: the node gets its identity from
// elsewhere (braid agent with etcd claims its pod CIDR; PodCIDR is then
// only a guess until the test reads the real one).
func WithoutInit() NodeOption { return func(o *nodeOptions) { o.noInit = true } }

// NodeDevice is every node's underlay device.
const NodeDevice = "eth0"

// nodeSysctls are set in every node, as on a typical Kubernetes node: a new
// netns does not inherit the root's, and results must not depend on the
// machine. Anything else a plugin needs, it must set itself.
var nodeSysctls = [][2]string{
	{"net/ipv4/ip_forward", "1"},
	{"net/ipv4/conf/all/rp_filter", "0"},
	{"net/ipv4/conf/default/rp_filter", "0"},
	{"net/ipv4/conf/all/accept_local", "0"},
	// braid is IPv4-only; IPv6 chatter would only add noise to counters.
	{"net/ipv6/conf/all/disable_ipv6", "1"},
	{"net/ipv6/conf/default/disable_ipv6", "1"},
}

// plumb sets the node's sysctls, brings lo up and joins eth0 to the bridge
// (the bridge side is named after the node, inside the underlay netns).
func (n *Node) plumb(underlay *NS) error {
	for _, kv := range nodeSysctls {
		if err := n.Sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	err := n.Do(func() error {
		u, err := os.Open(underlay.Path)
		if err != nil {
			return err
		}
		defer u.Close()
		eth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: NodeDevice, MTU: 1500},
			PeerName:      n.Name,
			PeerNamespace: netlink.NsFd(int(u.Fd())),
		}
		if err := netlink.LinkAdd(eth); err != nil {
			return fmt.Errorf("add %s: %w", NodeDevice, err)
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: n.IP.AsSlice(), Mask: net.CIDRMask(24, 32)}}
		if err := netlink.AddrAdd(eth, addr); err != nil {
			return fmt.Errorf("address %s: %w", NodeDevice, err)
		}
		return linksUp("lo", NodeDevice)
	})
	if err != nil {
		return err
	}
	return underlay.Do(func() error {
		peer, err := netlink.LinkByName(n.Name)
		if err != nil {
			return err
		}
		br, err := netlink.LinkByName(bridgeName)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetMaster(peer, br); err != nil {
			return fmt.Errorf("attach %s to %s: %w", n.Name, bridgeName, err)
		}
		return netlink.LinkSetUp(peer)
	})
}

// linksUp sets the named links up in the current netns.
func linksUp(names ...string) error {
	for _, name := range names {
		l, err := netlink.LinkByName(name)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			return fmt.Errorf("set %s up: %w", name, err)
		}
	}
	return nil
}
