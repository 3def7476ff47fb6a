// Package dsr is the integration suite of the dsr plugin: three nodes on an
// underlay, a client outside the cluster, NodePort services answered with
// direct server return in native and VXLAN mode, SNAT mode, Local policy,
// the SNAT fallback and forged options; captures on the underlay show which
// way packets go.
package dsr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/packet"
	"github.com/braid-cni/braid/internal/testenv"
	"github.com/braid-cni/braid/plugins/counters"
	"golang.org/x/sys/unix"
)

// Counter indices of bpf/dsr.c (names in plugins/dsr/counters.go).
const (
	ctrLocalDeliver  = int(counters.DSRCounterCNT_LOCAL_DELIVER)
	ctrDSRForward    = int(counters.DSRCounterCNT_DSR_FORWARD)
	ctrDSROptAdded   = int(counters.DSRCounterCNT_DSR_OPT_ADDED)
	ctrSNATForward   = int(counters.DSRCounterCNT_SNAT_FORWARD)
	ctrSNATFallback  = int(counters.DSRCounterCNT_SNAT_FALLBACK)
	ctrOptAccepted   = int(counters.DSRCounterCNT_OPT_ACCEPTED)
	ctrReplyRewrite  = int(counters.DSRCounterCNT_REPLY_REWRITE)
	ctrSNATReply     = int(counters.DSRCounterCNT_SNAT_REPLY)
	ctrDropNoBackend = int(counters.DSRCounterCNT_DROP_NO_BACKEND)
	ctrDropForgedOpt = int(counters.DSRCounterCNT_DROP_FORGED_OPT)
	ctrDropNAT       = int(counters.DSRCounterCNT_DROP_NAT)
	ctrDropSNATPorts = int(counters.DSRCounterCNT_DROP_SNAT_PORTS)
	ctrPass          = int(counters.DSRCounterCNT_PASS)
)

const (
	nativeConflist = "native-lb.conflist"
	vxlanConflist  = "vxlan-lb.conflist"
	vxlanPort      = 8472 // vxlan-lb.conflist's vxlanPort
	backendPort    = 8080
	optType        = 0x9a
)

// cluster is three nodes with one chain each, meshed, and client 1.
type cluster struct {
	topo   *harness.Topology
	nodes  []*harness.Node
	chains []*harness.Chain
	client *harness.Host
	mode   string // the conflist
}

// newCluster builds the cluster on conflist (with edits).
func newCluster(t *testing.T, conflist string, edits ...harness.Edit) *cluster {
	t.Helper()
	c := &cluster{topo: harness.New(t), mode: conflist}
	for range 3 {
		c.nodes = append(c.nodes, c.topo.AddNode(t))
	}
	harness.Mesh(t, c.nodes...)
	for _, n := range c.nodes {
		// The first ADD, or nodePort's sync, attaches dsr to the node.
		c.chains = append(c.chains, n.Conflist(t, conflist, append([]harness.Edit{socketLBCgroup(t, c.topo, n)}, edits...)...))
	}
	c.client = c.topo.AddClient(t, 1)
	return c
}

// socketLBCgroup gives sock-lb a cgroup of the node's own (its default is
// the host's root cgroup, which would balance every socket of the machine).
func socketLBCgroup(t *testing.T, topo *harness.Topology, n *harness.Node) harness.Edit {
	t.Helper()
	dir := testenv.Cgroup(t, topo.Name+"-"+n.Name)
	return func(list map[string]any) {
		plugins, _ := list["plugins"].([]any)
		for _, p := range plugins {
			if m, ok := p.(map[string]any); ok && m["type"] == "sock-lb" {
				m["cgroupRoot"] = dir
			}
		}
	}
}

// dsrKeys sets keys of the dsr plugin only.
func dsrKeys(kv map[string]any) harness.Edit {
	return func(list map[string]any) {
		plugins, _ := list["plugins"].([]any)
		for _, p := range plugins {
			if m, ok := p.(map[string]any); ok && m["type"] == "dsr" {
				for k, v := range kv {
					m[k] = v
				}
			}
		}
	}
}

// node is node i (1-based), as the suite's text counts.
func (c *cluster) node(i int) *harness.Node   { return c.nodes[i-1] }
func (c *cluster) chain(i int) *harness.Chain { return c.chains[i-1] }

// backend adds pod name on node i and serves TCP and UDP on backendPort in
// it: each answer names the pod and the peer address it saw.
func (c *cluster) backend(t *testing.T, i int, name string) *harness.Pod {
	t.Helper()
	p := c.chain(i).AddPod(t, name)
	serveTCP(t, p.NS, name)
	serveUDP(t, p.NS, name)
	return p
}

// nodePort adds a NodePort service per protocol ("tcp", "udp"), named
// name-protocol, on every node (the store is per node) and syncs them:
// backends on backendPort, policy "" (Cluster) or "Local".
func (c *cluster) nodePort(t *testing.T, name string, protocols []string, port uint16, policy string, backends ...*harness.Pod) {
	t.Helper()
	var bs []string
	for _, b := range backends {
		bs = append(bs, netip.AddrPortFrom(b.IP, backendPort).String())
	}
	for i, n := range c.nodes {
		for _, proto := range protocols {
			args := []string{"service", "add", name + "-" + proto, "--vip", "198.18.100.10", "--port", strconv.Itoa(int(port)),
				"--protocol", proto, "--backend", strings.Join(bs, ","),
				"--type", "NodePort", "--node-port", strconv.Itoa(int(port))}
			if policy != "" {
				args = append(args, "--external-traffic-policy", policy)
			}
			n.Braid(t, args...)
		}
		c.chains[i].RequireSync(t)
	}
}

// both is the protocols of most services here.
var both = []string{"tcp", "udp"}

// counters is node i's dsr counters.
func (c *cluster) counters(t *testing.T, i int) []uint64 {
	t.Helper()
	return c.node(i).Counters(t, "dsr")
}

// nodeMAC is node i's underlay device MAC, as a packet.MAC.
func (c *cluster) nodeMAC(t *testing.T, i int) packet.MAC {
	t.Helper()
	return packet.MAC(c.node(i).LinkMAC(t, harness.NodeDevice))
}

// --- servers in backend pods ---

// serveTCP answers every connection on backendPort with "<name> <peer>\n",
// then waits for the client to close (so the client's close, not the
// server's, ends the connection and the server keeps no TIME_WAIT).
func serveTCP(t *testing.T, ns *harness.NS, name string) {
	l := ns.Listen(t, fmt.Sprintf(":%d", backendPort))
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return // closed at cleanup
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 256)
				if _, err := conn.Read(buf); err != nil {
					return
				}
				fmt.Fprintf(conn, "%s %s\n", name, conn.RemoteAddr())
				_, _ = io.Copy(io.Discard, conn)
			}()
		}
	}()
}

// serveUDP answers every datagram on backendPort with "<name> <peer>".
func serveUDP(t *testing.T, ns *harness.NS, name string) {
	s := ns.ListenUDP(t, fmt.Sprintf(":%d", backendPort))
	var wg sync.WaitGroup
	t.Cleanup(func() { s.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			_, from, err := s.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed at cleanup
			}
			_, _ = s.WriteToUDPAddrPort([]byte(fmt.Sprintf("%s %s", name, from)), from)
		}
	}()
}

// answer is what a backend said and where the answer came from.
type answer struct {
	backend string         // the pod's name
	peer    netip.AddrPort // the client address the backend saw
	from    netip.AddrPort // the answer's source, as the client saw it
}

func parseAnswer(b []byte, from netip.AddrPort) (answer, error) {
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return answer{}, fmt.Errorf("answer %q", b)
	}
	peer, err := netip.ParseAddrPort(f[1])
	if err != nil {
		return answer{}, err
	}
	return answer{backend: f[0], peer: netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port()), from: from}, nil
}

// request is a client's exchange with a node port.
type request struct {
	proto  string         // "tcp" or "udp"
	src    netip.AddrPort // zero: the client's address, any port
	ipOpts []byte         // IP_OPTIONS of the client's socket, from the first packet
	// lateOpts are IP_OPTIONS set on a TCP socket once connected: the
	// handshake has none, the data segment has them.
	lateOpts []byte
	payload  int           // bytes to send (at least a few)
	timeout  time.Duration // for the whole exchange; 5s if 0
}

// do sends r from h to dst and returns the answer. Sockets have
// SO_REUSEADDR, so that a fixed source port can serve several connections
// in turn, and TCP connections close with a RST (SO_LINGER 0): no
// TIME_WAIT anywhere, so the port can be used again at once, through
// another node.
func (r request) do(h *harness.Host, dst netip.AddrPort) (answer, error) {
	if r.timeout == 0 {
		r.timeout = 5 * time.Second // generous: the suites share a loaded machine
	}
	msg := bytes.Repeat([]byte("b"), max(r.payload, 8))
	src := r.src
	if !src.IsValid() {
		src = netip.AddrPortFrom(h.IP, 0)
	}
	control := func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			if serr == nil && len(r.ipOpts) > 0 {
				serr = unix.SetsockoptString(int(fd), unix.IPPROTO_IP, unix.IP_OPTIONS, string(r.ipOpts))
			}
		})
		return errors.Join(err, serr)
	}
	switch r.proto {
	case "tcp":
		d := net.Dialer{Timeout: r.timeout, LocalAddr: net.TCPAddrFromAddrPort(src), Control: control}
		var conn *net.TCPConn
		err := h.Do(func() error {
			c, err := d.Dial("tcp4", dst.String())
			if err == nil {
				conn = c.(*net.TCPConn)
			}
			return err
		})
		if err != nil {
			return answer{}, err
		}
		defer conn.Close()
		_ = conn.SetLinger(0)
		_ = conn.SetDeadline(time.Now().Add(r.timeout))
		if len(r.lateOpts) > 0 {
			if err := setIPOptions(conn, r.lateOpts); err != nil {
				return answer{}, err
			}
		}
		if _, err := conn.Write(msg); err != nil {
			return answer{}, err
		}
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			return answer{}, fmt.Errorf("tcp %s -> %s: %w", conn.LocalAddr(), dst, err)
		}
		return parseAnswer(buf[:n], conn.RemoteAddr().(*net.TCPAddr).AddrPort())
	case "udp":
		// Unconnected, so the socket takes (and reports) any source.
		lc := net.ListenConfig{Control: control}
		var conn *net.UDPConn
		err := h.Do(func() error {
			c, err := lc.ListenPacket(context.Background(), "udp4", src.String())
			if err == nil {
				conn = c.(*net.UDPConn)
			}
			return err
		})
		if err != nil {
			return answer{}, err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(r.timeout))
		if _, err := conn.WriteToUDPAddrPort(msg, dst); err != nil {
			return answer{}, err
		}
		buf := make([]byte, 256)
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return answer{}, fmt.Errorf("udp %s -> %s: %w", conn.LocalAddr(), dst, err)
		}
		return parseAnswer(buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
	}
	return answer{}, fmt.Errorf("protocol %q", r.proto)
}

// setIPOptions sets IP_OPTIONS: every packet the socket sends from now on
// carries them.
func setIPOptions(c syscall.Conn, opts []byte) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.IPPROTO_IP, unix.IP_OPTIONS, string(opts))
	})
	return errors.Join(err, serr)
}

// --- captures ---

// capture is a capture on a bridge port of the underlay.
func (c *cluster) capture(t *testing.T, port string) *harness.Tcpdump {
	t.Helper()
	return c.topo.Underlay.StartCapture(t, port, "ip")
}

// layers are a frame and, for VXLAN, its inner frame: what a check
// matches against.
func layers(f *packet.Frame) []*packet.Frame {
	out := []*packet.Frame{f}
	if inner, _, ok := harness.VXLANInner(f, vxlanPort); ok {
		out = append(out, inner)
	}
	return out
}

// match returns the frames (outer or inner) for which keep holds.
func match(frames []*packet.Frame, keep func(*packet.Frame) bool) []*packet.Frame {
	var out []*packet.Frame
	for _, f := range frames {
		for _, l := range layers(f) {
			if keep(l) {
				out = append(out, l)
			}
		}
	}
	return out
}

func dump(frames []*packet.Frame) string {
	var b strings.Builder
	for _, f := range frames {
		fmt.Fprintf(&b, "\n  %x > %x %s", f.SrcMAC, f.DstMAC, f)
	}
	return b.String()
}

// requireCounterUp fails t unless counter i of after exceeds before by at
// least n.
func requireCounterUp(t *testing.T, what string, before, after []uint64, i int, n uint64) {
	t.Helper()
	if after[i] < before[i]+n {
		t.Errorf("%s: dsr counter %d went from %d to %d, want +%d", what, i, before[i], after[i], n)
	}
}

// requireCounterSame fails t if any of counters idx changed.
func requireCounterSame(t *testing.T, what string, before, after []uint64, idx ...int) {
	t.Helper()
	for _, i := range idx {
		if after[i] != before[i] {
			t.Errorf("%s: dsr counter %d went from %d to %d, want unchanged", what, i, before[i], after[i])
		}
	}
}

// dsrOption is the option a node adds: 9a 08, node port, node address.
func dsrOption(node netip.Addr, port uint16) []byte {
	a := node.As4()
	return []byte{optType, 8, byte(port >> 8), byte(port), a[0], a[1], a[2], a[3]}
}
