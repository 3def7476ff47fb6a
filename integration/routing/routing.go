// Package routing holds what the two routing-mode suites share
// (integration/vxlantunnel and integration/nativeroute): a cluster of nodes
// running one conflist, and the scenarios every routing mode must pass -
// cross-node traffic in both directions, the fast path really taken,
// same-node traffic left to veth-ebpf, pod MTU and DF, nodes joining and
// leaving, CHECK, DEL and GC. A Mode says what differs: the plugin, its
// counters, the pod MTU, what the underlay carries, and what a node leaves
// behind in the plugin's state.
package routing

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/packet"
	"golang.org/x/sys/unix"
)

// Mode is one routing plugin as the shared scenarios see it.
type Mode struct {
	Name     string // "vxlan", "native"
	Plugin   string // the routing plugin's CNI type
	Conflist string // in chain-configs/
	// SendCounters: one of them rises on the sending node for each
	// cross-node packet that takes the eBPF fast path out of a pod.
	SendCounters []string
	// ReceiveCounter rises on the receiving node for each such packet
	// delivered straight into the pod.
	ReceiveCounter string
	// Background are counters that traffic of the node itself moves (ARP
	// and the like on the underlay): ignored where a test requires the
	// plugin to have seen nothing of a pod's packets.
	Background []string
	// PodMTU is the pod MTU the mode gives for an underlay MTU.
	PodMTU func(underlay int) int
	// Underlay checks a capture on the sending node's underlay port of
	// one ICMP echo request and reply between from and to.
	Underlay func(t testing.TB, frames []*packet.Frame, from, to *harness.Pod, fromNode, toNode *harness.Node)
	// Knows checks that node's datapath state holds peer (true) or holds
	// nothing of it any more (false), beyond the routes every mode has.
	Knows func(t testing.TB, node, peer *harness.Node, want bool)
	// Breaks are ways to break a healthy node that CHECK must name and
	// `braid sync` must repair.
	Breaks []Break
}

// Break damages node (whose only peer is peer, and where pod runs) in one
// way; CHECK's error must then contain Want(...).
type Break struct {
	Name  string
	Apply func(t testing.TB, node, peer *harness.Node, pod *harness.Pod)
	Want  func(node, peer *harness.Node, pod *harness.Pod) string
}

// Cluster is a topology whose nodes all run the mode's conflist.
type Cluster struct {
	Mode   Mode
	Topo   *harness.Topology
	Nodes  []*harness.Node
	Chains []*harness.Chain // Chains[i] is Nodes[i]'s
	edits  []harness.Edit
}

// NewCluster builds n nodes that all know each other, each with the mode's
// conflist (edits applied). No plugin has run yet: the first ADD on a node
// sets up its datapath.
func NewCluster(t *testing.T, mode Mode, n int, edits ...harness.Edit) *Cluster {
	t.Helper()
	c := &Cluster{Mode: mode, Topo: harness.New(t), edits: edits}
	for range n {
		c.AddNode(t)
	}
	harness.Mesh(t, c.Nodes...)
	return c
}

// AddNode adds a node with the cluster's conflist; it knows no peer and no
// peer knows it.
func (c *Cluster) AddNode(t *testing.T) (*harness.Node, *harness.Chain) {
	t.Helper()
	n := c.Topo.AddNode(t)
	ch := n.Conflist(t, c.Mode.Conflist, c.edits...)
	c.Nodes, c.Chains = append(c.Nodes, n), append(c.Chains, ch)
	return n, ch
}

// Chain is the conflist of node n.
func (c *Cluster) Chain(n *harness.Node) *harness.Chain {
	return c.Chains[slices.Index(c.Nodes, n)]
}

// Counters reads the mode's plugin counters on n.
func (c *Cluster) Counters(t testing.TB, n *harness.Node) harness.CounterSet {
	t.Helper()
	return n.CounterSet(t, c.Mode.Plugin)
}

// RequirePing fails t unless one echo request from a to b is answered
// (within 2 s, for a loaded machine): a route, a map entry or an attachment
// that is late fails it.
func RequirePing(t testing.TB, a, b *harness.Pod) {
	t.Helper()
	if _, err := a.Run("ping", "-n", "-q", "-c1", "-W2", b.IP.String()); err != nil {
		t.Errorf("ping %s (%s) -> %s (%s): %v", a.Name, a.IP, b.Name, b.IP, err)
	}
}

// RequireNoPing fails t if a echo request from a to b is answered.
func RequireNoPing(t testing.TB, a, b *harness.Pod) {
	t.Helper()
	if err := a.Ping(b.IP); err == nil {
		t.Errorf("ping %s (%s) -> %s (%s) was answered", a.Name, a.IP, b.Name, b.IP)
	}
}

// pingFlood sends count echo requests from a to b, 50 ms apart, and
// requires every reply.
func pingFlood(t testing.TB, a, b *harness.Pod, count int) {
	t.Helper()
	_, err := a.Run("ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", "0.05", "-W", "1", b.IP.String())
	if err != nil {
		t.Fatalf("ping -c %d %s -> %s: %v", count, a.Name, b.Name, err)
	}
}

// drops lists the counters named drop_* that moved.
func drops(d map[string]uint64) []string {
	var out []string
	for k, v := range d {
		if strings.HasPrefix(k, "drop") {
			out = append(out, fmt.Sprintf("%s+%d", k, v))
		}
	}
	slices.Sort(out)
	return out
}

// ifaceMTUs are the MTUs the ADD result reports, by interface name.
func ifaceMTUs(p *harness.Pod) map[string]int {
	out := map[string]int{}
	for _, i := range p.Result.Interfaces {
		out[i.Name] = i.Mtu
	}
	return out
}

// CrossNode runs pods on three nodes and checks traffic between them and
// on one node: ICMP, TCP, UDP both ways, source addresses kept, the fast
// path counters, the underlay capture, and the node's stack to a remote pod.
func CrossNode(t *testing.T, mode Mode) {
	c := NewCluster(t, mode, 3)
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	a, b := c.Chains[0].AddPod(t, "a"), c.Chains[0].AddPod(t, "b")
	p2, p3 := c.Chains[1].AddPod(t, "c"), c.Chains[2].AddPod(t, "d")
	pairs := [][2]*harness.Pod{{a, p2}, {p2, a}, {a, p3}, {p3, a}, {p2, p3}, {p3, p2}}

	t.Run("ping", func(t *testing.T) {
		for _, p := range pairs {
			RequirePing(t, p[0], p[1])
		}
	})
	t.Run("tcp", func(t *testing.T) {
		for _, p := range pairs {
			if got := p[0].RequireTCP(t, p[1].NS, p[1].IP); got.Addr() != p[0].IP {
				t.Errorf("%s saw TCP from %s, want %s: the source was rewritten", p[1].Name, got, p[0].IP)
			}
		}
	})
	t.Run("udp", func(t *testing.T) {
		for _, p := range pairs {
			if got := p[0].RequireUDP(t, p[1].NS, p[1].IP); got.Addr() != p[0].IP {
				t.Errorf("%s saw UDP from %s, want %s: the source was rewritten", p[1].Name, got, p[0].IP)
			}
		}
	})
	t.Run("fast path", func(t *testing.T) {
		before1, before2 := c.Counters(t, n1), c.Counters(t, n2)
		const count = 5
		pingFlood(t, a, p2, count)
		d1, d2 := c.Counters(t, n1).Since(before1), c.Counters(t, n2).Since(before2)
		t.Logf("%s counters: %s %s, %s %s", mode.Plugin, n1.Name, harness.FormatDeltas(d1), n2.Name, harness.FormatDeltas(d2))
		sum := func(d map[string]uint64, names []string) (s uint64) {
			for _, n := range names {
				s += d[n]
			}
			return s
		}
		// Requests leave n1 and enter n2 through the programs; replies
		// the other way.
		for _, chk := range []struct {
			node  string
			what  string
			got   uint64
			delta map[string]uint64
		}{
			{n1.Name, "requests sent (" + strings.Join(mode.SendCounters, "/") + ")", sum(d1, mode.SendCounters), d1},
			{n2.Name, "requests delivered (" + mode.ReceiveCounter + ")", d2[mode.ReceiveCounter], d2},
			{n2.Name, "replies sent (" + strings.Join(mode.SendCounters, "/") + ")", sum(d2, mode.SendCounters), d2},
			{n1.Name, "replies delivered (" + mode.ReceiveCounter + ")", d1[mode.ReceiveCounter], d1},
		} {
			if chk.got < count {
				t.Errorf("%s on %s: %d, want at least %d (counters moved: %s)", chk.what, chk.node, chk.got, count, harness.FormatDeltas(chk.delta))
			}
		}
		if d := append(drops(d1), drops(d2)...); len(d) > 0 {
			t.Errorf("drop counters rose: %v", d)
		}
	})
	t.Run("tcp bulk takes the fast path", func(t *testing.T) {
		// A pod's TCP sends GSO trains through its veth: they must be
		// forwarded by the programs too, not handed to the stack.
		before1 := c.Counters(t, n1)
		const size = 4 << 20
		RequireBulkTCP(t, a, p2, size)
		d := c.Counters(t, n1).Since(before1)
		var fast uint64
		for _, n := range mode.SendCounters {
			fast += d[n]
		}
		slow := d["fib_to_stack"] + d["frag_needed"] + d["pass_next"]
		t.Logf("%s counters on %s: %s", mode.Plugin, n1.Name, harness.FormatDeltas(d))
		if fast == 0 || slow > fast/10 {
			t.Errorf("%d MiB from %s to %s: %d packets on the fast path, %d to the stack (counters moved: %s)",
				size>>20, a.Name, p2.Name, fast, slow, harness.FormatDeltas(d))
		}
	})
	t.Run("node to remote pod", func(t *testing.T) {
		if err := n1.Ping(p2.IP); err != nil {
			t.Errorf("ping %s -> %s: %v", n1.Name, p2.IP, err)
		}
		n1.RequireTCP(t, p3.NS, p3.IP)
		n3.RequireUDP(t, a.NS, a.IP)
	})
	t.Run("same node stays with veth-ebpf", func(t *testing.T) {
		vethBefore, routeBefore := n1.CounterSet(t, "veth-ebpf"), c.Counters(t, n1)
		pingFlood(t, a, b, 3)
		pingFlood(t, b, a, 3)
		a.RequireTCP(t, b.NS, b.IP)
		if d := n1.CounterSet(t, "veth-ebpf").Delta(t, vethBefore, "redirect_peer"); d < 12 {
			t.Errorf("veth-ebpf redirect_peer rose by %d, want at least 12 (6 requests, 6 replies)", d)
		}
		d := c.Counters(t, n1).Since(routeBefore)
		for _, k := range mode.Background {
			delete(d, k)
		}
		if len(d) > 0 {
			t.Errorf("%s saw same-node traffic: %s", mode.Plugin, harness.FormatDeltas(d))
		}
	})
	t.Run("underlay", func(t *testing.T) {
		capture := c.Topo.Underlay.StartCapture(t, n1.UnderlayPort(), "icmp or udp")
		RequirePing(t, a, p2)
		mode.Underlay(t, capture.Stop(t), a, p2, n1, n2)
	})
	t.Run("ttl expiry is answered", func(t *testing.T) {
		// What traceroute relies on: a packet whose TTL runs out on the
		// way is answered with ICMP "time exceeded", not lost. Both nodes
		// route the packet, in either mode (the overlay is a link between
		// them): TTL 2 runs out at the receiving node.
		for _, p := range [][2]*harness.Pod{{a, p2}, {p3, a}} {
			for _, ttl := range []int{1, 2} {
				ans := p[0].Send(t, p[1].NS, p[1].IP, harness.Probe{Size: 100, TTL: ttl})
				if e := ans.Error; e == nil || e.Local || e.Type != 11 || e.Code != 0 {
					t.Errorf("TTL %d %s -> %s: %s, want ICMP time exceeded", ttl, p[0].Name, p[1].Name, ans)
				}
			}
			if ans := p[0].Send(t, p[1].NS, p[1].IP, harness.Probe{Size: 100, TTL: 3}); !ans.Echoed {
				t.Errorf("TTL 3 %s -> %s: %s, want it delivered", p[0].Name, p[1].Name, ans)
			}
		}
	})
	t.Run("mtu", func(t *testing.T) {
		RequireMTU(t, mode.PodMTU(1500), a, p2)
	})
}

// RequireMTU checks both pods' MTU (the pod's interface, its host veth and
// the ADD result) and that between them a DF packet of exactly the MTU
// passes both ways (ping and UDP), and one byte more is refused by the
// sender's kernel with EMSGSIZE and the MTU.
func RequireMTU(t *testing.T, mtu int, a, b *harness.Pod) {
	t.Helper()
	for _, p := range []*harness.Pod{a, b} {
		host, _ := p.HostIf()
		got := map[string]int{
			"pod " + p.IfName:    p.LinkMTU(t, p.IfName),
			"host " + host:       p.Chain.Node.LinkMTU(t, host),
			"result " + host:     ifaceMTUs(p)[host],
			"result " + p.IfName: ifaceMTUs(p)[p.IfName],
		}
		for k, v := range got {
			if v != mtu {
				t.Errorf("%s: %s has MTU %d, want %d", p.Name, k, v, mtu)
			}
		}
	}
	for _, p := range [][2]*harness.Pod{{a, b}, {b, a}} {
		from, to := p[0], p[1]
		if _, err := from.Run("ping", "-n", "-q", "-c1", "-W1", "-M", "do", "-s", strconv.Itoa(mtu-28), to.IP.String()); err != nil {
			t.Errorf("ping of %d bytes with DF %s -> %s: %v", mtu, from.Name, to.Name, err)
		}
		if ans := from.Send(t, to.NS, to.IP, harness.Probe{Size: mtu, DF: true}); !ans.Echoed {
			t.Errorf("UDP packet of %d bytes with DF %s -> %s: %s, want it delivered", mtu, from.Name, to.Name, ans)
		}
		ans := from.Send(t, to.NS, to.IP, harness.Probe{Size: mtu + 1, DF: true})
		if e := ans.Error; e == nil || !e.Local || e.Errno != unix.EMSGSIZE || int(e.Info) != mtu {
			t.Errorf("UDP packet of %d bytes with DF %s -> %s: %s, want a local EMSGSIZE with mtu %d", mtu+1, from.Name, to.Name, ans, mtu)
		}
	}
}

// bulkTimeout bounds a bulk transfer; a few MiB take milliseconds here.
const bulkTimeout = 10 * time.Second

// RequireBulkTCP sends size bytes over one TCP connection from a to b and
// checks they all arrive.
func RequireBulkTCP(t testing.TB, a, b *harness.Pod, size int) {
	t.Helper()
	l := b.Listen(t, ":0")
	got := make(chan int, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(bulkTimeout))
		n, buf := 0, make([]byte, 1<<16)
		for {
			m, err := c.Read(buf)
			n += m
			if err != nil {
				break
			}
		}
		got <- n
	}()
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	conn, err := a.Dial("tcp4", netip.AddrPortFrom(b.IP, port))
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(bulkTimeout))
	chunk := make([]byte, 1<<16)
	for sent := 0; sent < size; sent += len(chunk) {
		if _, err := conn.Write(chunk); err != nil {
			conn.Close()
			t.Fatalf("TCP %s -> %s after %d bytes: %v", a.Name, b.Name, sent, err)
		}
	}
	conn.Close()
	if n := <-got; n != size {
		t.Fatalf("TCP %s -> %s: %d bytes arrived, want %d", a.Name, b.Name, n, size)
	}
}
