package harness

// Helpers for suites with several nodes: the cluster view each node keeps
// (`braid node add/del`), `braid sync`, the underlay's MTU, plain hosts on
// the underlay, and what a node's routing looks like from outside.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/routes"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/vishvananda/netlink"
)

// RouteProtocol tags the routes braid installs (core/routes.Protocol), as
// `ip route show proto 157` lists them.
const RouteProtocol = routes.Protocol

// TryBraid runs bin/braid like Braid but returns its failure (with stderr)
// instead of failing t, for commands that are expected to fail.
func (n *Node) TryBraid(t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	return n.Run(requireBinary(t, "braid"),
		append(args, "--state-dir", n.StateDir, "--bpf-root", n.BPFRoot)...)
}

// AddPeer records m in n's store as another node of the cluster
// (`braid node add`); it reaches n's datapath with the next sync or ADD.
func (n *Node) AddPeer(t testing.TB, m *Node) {
	t.Helper()
	n.Braid(t, "node", "add", m.Name, "--node-ip", m.IP.String(), "--pod-cidr", m.PodCIDR.String())
}

// DelPeer removes m from n's store (`braid node del`).
func (n *Node) DelPeer(t testing.TB, m *Node) {
	t.Helper()
	n.Braid(t, "node", "del", m.Name)
}

// Mesh makes every one of nodes know every other one.
func Mesh(t testing.TB, nodes ...*Node) {
	t.Helper()
	for _, n := range nodes {
		for _, m := range nodes {
			if m != n {
				n.AddPeer(t, m)
			}
		}
	}
}

// Sync runs `braid sync` for the chain's conflist inside the node, with the
// repository's plugins as the CNI path, and returns its output: the table
// of changes and problems; the error says it exited non-zero.
func (c *Chain) Sync(t testing.TB) ([]byte, error) {
	t.Helper()
	return c.Node.TryBraid(t, append([]string{"sync"}, c.ConflistFlags(t)...)...)
}

// ConflistFlags are the braid flags that name this chain's conflist and
// where its plugins are (sync, node rebuild).
func (c *Chain) ConflistFlags(t testing.TB) []string {
	t.Helper()
	repo, err := Repo()
	if err != nil {
		t.Fatal(err)
	}
	return []string{"--conflist", c.File, "--cni-path", binDir(repo) + string(os.PathListSeparator) + toolsCNIDir(repo)}
}

// RequireSync is Sync that must succeed.
func (c *Chain) RequireSync(t testing.TB) []byte {
	t.Helper()
	out, err := c.Sync(t)
	if err != nil {
		t.Fatalf("braid sync on %s: %v\n%s", c.Node.Name, err, out)
	}
	return out
}

// UnderlayPort is the name of the node's port on the underlay bridge (in
// the underlay netns): where a capture sees everything the node sends and
// receives.
func (n *Node) UnderlayPort() string { return n.Name }

// SetUnderlayMTU sets the MTU of every node's underlay device and of every
// port of the underlay bridge, as if the underlay network were built with
// that MTU (hosts keep their own device's: see Host). Plugins see it at
// their next ADD or sync.
func (topo *Topology) SetUnderlayMTU(t testing.TB, mtu int) {
	t.Helper()
	for _, n := range topo.Nodes {
		n.SetLinkMTU(t, NodeDevice, mtu)
	}
	err := topo.Underlay.Do(func() error {
		br, err := netlink.LinkByName(bridgeName)
		if err != nil {
			return err
		}
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if l.Attrs().MasterIndex == br.Attrs().Index {
				if err := netlink.LinkSetMTU(l, mtu); err != nil {
					return fmt.Errorf("%s: %w", l.Attrs().Name, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("underlay mtu %d: %v", mtu, err)
	}
}

// SetLinkMTU sets the MTU of the named link inside ns.
func (ns *NS) SetLinkMTU(t testing.TB, name string, mtu int) {
	t.Helper()
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		return netlink.LinkSetMTU(l, mtu)
	})
	if err != nil {
		t.Fatalf("set mtu %d on %s in %s: %v", mtu, name, ns, err)
	}
}

// LinkMTU is the MTU of the named link inside ns.
func (ns *NS) LinkMTU(t testing.TB, name string) int {
	t.Helper()
	var mtu int
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(name)
		if err == nil {
			mtu = l.Attrs().MTU
		}
		return err
	})
	if err != nil {
		t.Fatalf("link %s in %s: %v", name, ns, err)
	}
	return mtu
}

// Host is a machine on the underlay that is not a node: no braid, just an
// address (an attacker, an external client). Its device is NodeDevice.
type Host struct {
	*NS
	IP   netip.Addr
	Port string // its port on the underlay bridge, for captures
}

// AddHost adds a host "<topology>-<name>" whose eth0 has addr and is
// joined to the underlay bridge. Nodes have no route to it unless it is on
// the underlay subnet.
func (topo *Topology) AddHost(t testing.TB, name string, addr netip.Prefix) *Host {
	t.Helper()
	ns, err := createNS(topo.Name + "-" + name)
	if err != nil {
		t.Fatal(err)
	}
	h := &Host{NS: ns, IP: addr.Addr(), Port: "h-" + name}
	if len(h.Port) > 15 {
		t.Fatalf("host name %q is too long", name)
	}
	err = ns.Do(func() error {
		u, err := os.Open(topo.Underlay.Path)
		if err != nil {
			return err
		}
		defer u.Close()
		eth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: NodeDevice, MTU: 1500},
			PeerName:      h.Port,
			PeerNamespace: netlink.NsFd(int(u.Fd())),
		}
		if err := netlink.LinkAdd(eth); err != nil {
			return fmt.Errorf("add %s: %w", NodeDevice, err)
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}}
		if err := netlink.AddrAdd(eth, a); err != nil {
			return err
		}
		return linksUp("lo", NodeDevice)
	})
	if err == nil {
		err = topo.Underlay.Do(func() error {
			peer, err := netlink.LinkByName(h.Port)
			if err != nil {
				return err
			}
			br, err := netlink.LinkByName(bridgeName)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetMaster(peer, br); err != nil {
				return err
			}
			return netlink.LinkSetUp(peer)
		})
	}
	if err != nil {
		t.Fatalf("host %s: %v", name, err)
	}
	topo.waitForwarding(t, h.Port)
	return h
}

// waitForwarding waits until the bridge forwards through port: the bridge
// learns of a new port's carrier asynchronously, and a first ARP request
// sent before that is lost (and retried only a second later).
func (topo *Topology) waitForwarding(t testing.TB, port string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		out, err := topo.Underlay.Run("bridge", "link", "show", "dev", port)
		if err == nil && strings.Contains(string(out), "state forwarding") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bridge port %s is not forwarding: %s %v", port, out, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BraidRoutes lists the routes braid installed in the node (protocol 157),
// as "dst" or "dst via gw dev name".
func (n *Node) BraidRoutes(t testing.TB) []string {
	t.Helper()
	var out []string
	err := n.Do(func() error {
		routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4,
			&netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
		for _, r := range routes {
			s := r.Dst.String()
			if r.Gw != nil {
				s += " via " + r.Gw.String()
			}
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				s += " dev " + l.Attrs().Name
			}
			out = append(out, s)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// RoutesTo is the subset of BraidRoutes for dst.
func (n *Node) RoutesTo(t testing.TB, dst netip.Prefix) []string {
	t.Helper()
	var out []string
	for _, r := range n.BraidRoutes(t) {
		if strings.HasPrefix(r, dst.String()+" ") || r == dst.String() {
			out = append(out, r)
		}
	}
	return out
}

// FDB is `bridge fdb show dev <dev>` inside the node, one entry a line.
func (n *Node) FDB(t testing.TB, dev string) []string {
	t.Helper()
	RequireRoot(t, "bridge")
	out, err := n.Run("bridge", "fdb", "show", "dev", dev)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// PinPath is a path under the node's bpffs: PinPath("vxlan-tunnel",
// "tunnel_map").
func (n *Node) PinPath(elem ...string) string {
	return filepath.Join(append([]string{n.BPFRoot}, elem...)...)
}

// RemovePin deletes a pin of the node, as an operator's mistake would; a
// link pin removed detaches its program.
func (n *Node) RemovePin(t testing.TB, elem ...string) {
	t.Helper()
	if err := os.Remove(n.PinPath(elem...)); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// ExecNoResult runs one plugin of the chain directly with raw stdin for a
// verb that prints no result (DEL, CHECK, GC, STATUS), as a runtime would
// for that plugin alone.
func (p *Pod) ExecNoResult(plugin, verb string, stdin []byte) error {
	repo, err := Repo()
	if err != nil {
		return err
	}
	paths := []string{binDir(repo), toolsCNIDir(repo)}
	path, err := invoke.FindInPath(plugin, paths)
	if err != nil {
		return err
	}
	args := &invoke.Args{Command: verb, ContainerID: p.ContainerID, NetNS: p.Path, IfName: p.IfName,
		Path: strings.Join(paths, ":")}
	return p.Chain.do(func(ctx context.Context) error {
		return invoke.ExecPluginWithoutResult(ctx, path, stdin, args, nil)
	})
}
