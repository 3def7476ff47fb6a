package dsr

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/packet"
)

// A NodePort on node 1 whose only backend is on node 2: the request goes
// node 1 -> node 2 with the option, the reply node 2 -> client with the
// service address, never back through node 1. Native and VXLAN mode.
func TestNodePortDSR(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{nativeConflist, vxlanConflist} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, mode)
			web := c.backend(t, 2, "web")
			const np = 30080
			c.nodePort(t, "web", both, np, "", web)
			svc := netip.AddrPortFrom(c.node(1).IP, np)
			n1MAC, n2MAC := c.nodeMAC(t, 1), c.nodeMAC(t, 2)
			before1, before2 := c.counters(t, 1), c.counters(t, 2)

			cap1 := c.capture(t, c.node(1).UnderlayPort())
			cap2 := c.capture(t, c.node(2).UnderlayPort())
			capC := c.capture(t, c.client.Port)
			tcpAns, tcpErr := request{proto: "tcp"}.do(c.client, svc)
			udpAns, udpErr := request{proto: "udp"}.do(c.client, svc)
			on1, on2, onC := cap1.Stop(t), cap2.Stop(t), capC.Stop(t)
			if tcpErr != nil || udpErr != nil {
				t.Fatalf("TCP: %v; UDP: %v\nnode 1's port:%s\nnode 2's port:%s\nclient's port:%s",
					tcpErr, udpErr, dump(on1), dump(on2), dump(onC))
			}
			for _, a := range []answer{tcpAns, udpAns} {
				if a.backend != "web" || a.from != svc {
					t.Errorf("answer %+v: want backend web from %s", a, svc)
				}
				// DSR keeps the client's address: no SNAT anywhere.
				if a.peer.Addr() != c.client.IP {
					t.Errorf("the backend saw %s, want the client %s", a.peer, c.client.IP)
				}
			}

			// Node 1's port: each request forwarded to the pod (natively, or
			// inside VXLAN from node 1 to node 2), carrying the option...
			fwd := match(on1, func(f *packet.Frame) bool {
				return f.Src == c.client.IP && f.Dst == web.IP && f.DstPort == backendPort
			})
			for _, proto := range []uint8{packet.ProtoTCP, packet.ProtoUDP} {
				var opt []byte
				for _, f := range fwd {
					if f.Proto == proto && (proto == packet.ProtoUDP || f.TCPFlags == packet.SYN) {
						opt = f.Option(optType)
					}
				}
				if !bytes.Equal(opt, dsrOption(c.node(1).IP, np)) {
					t.Errorf("node 1's port: no request (proto %d) to %s:%d with option % x; forwarded:%s",
						proto, web.IP, backendPort, dsrOption(c.node(1).IP, np), dump(fwd))
				}
			}
			for _, f := range on1 {
				if mode == vxlanConflist && f.Src == c.node(1).IP && f.Dst == c.node(2).IP && f.DstPort != vxlanPort {
					t.Errorf("node 1 -> node 2 outside the tunnel in VXLAN mode: %s", f)
				}
				if f.SrcMAC != n1MAC && f.Dst == web.IP {
					t.Errorf("node 1's port: request not from node 1: %s", f)
				}
			}
			// ...and no reply passing back through it.
			if back := match(on1, func(f *packet.Frame) bool {
				return f.Src == web.IP || f.Dst == c.client.IP
			}); len(back) > 0 {
				t.Errorf("replies passed through node 1's port:%s", dump(back))
			}

			// Node 2's port: the requests arrive with the option (inner
			// packet in VXLAN mode); the replies leave straight to the
			// client, from the service address.
			in2 := match(on2, func(f *packet.Frame) bool { return f.Dst == web.IP && f.Option(optType) != nil })
			if len(in2) < 2 {
				t.Errorf("node 2's port: %d requests with the option, want the SYN and the datagram:%s", len(in2), dump(on2))
			}
			// (L4 checksums are not checked here: the client's and the pod's
			// veths leave them to "offload", so captures show partial sums;
			// the BPF unit tests check them.)
			for _, f := range in2 {
				if f.IHL != 7 || !bytes.Equal(f.Options, dsrOption(c.node(1).IP, np)) || !f.IPChecksumOK() {
					t.Errorf("node 2's port: bad request %s (IP checksum ok %v)", f, f.IPChecksumOK())
				}
			}
			replies := match(on2, func(f *packet.Frame) bool { return f.Dst == c.client.IP })
			if len(replies) < 2 {
				t.Errorf("node 2's port: %d replies to the client, want at least 2:%s", len(replies), dump(on2))
			}
			for _, f := range replies {
				src, _ := f.AddrPorts()
				if src != svc || f.SrcMAC != n2MAC || f.Inner != nil || !f.IPChecksumOK() {
					t.Errorf("node 2's port: reply %x %s: want from %s, by node 2 (%x), plain, IP checksum valid", f.SrcMAC, f, svc, n2MAC)
				}
			}
			// The client's port: every packet to the client comes from the
			// service address, sent by node 2.
			for _, f := range onC {
				if f.Dst != c.client.IP {
					continue
				}
				if src, _ := f.AddrPorts(); src != svc || f.SrcMAC != n2MAC {
					t.Errorf("client received %x %s: want from %s by node 2 (%x)", f.SrcMAC, f, svc, n2MAC)
				}
			}

			after1, after2 := c.counters(t, 1), c.counters(t, 2)
			requireCounterUp(t, "node 1", before1, after1, ctrDSROptAdded, 2)
			requireCounterUp(t, "node 1", before1, after1, ctrDSRForward, 2)
			requireCounterSame(t, "node 1", before1, after1, ctrSNATForward, ctrSNATFallback, ctrDropNAT, ctrDropNoBackend)
			requireCounterUp(t, "node 2", before2, after2, ctrOptAccepted, 2)
			requireCounterUp(t, "node 2", before2, after2, ctrReplyRewrite, 2)
			requireCounterSame(t, "node 2", before2, after2, ctrDropForgedOpt, ctrDropNAT)
		})
	}
}

// Backends on all three nodes: a flow (client address and port) reaches the
// same backend whichever node it enters through, in both modes.
func TestSameBackendWhicheverEntry(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{nativeConflist, vxlanConflist} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, mode)
			b1, b2, b3 := c.backend(t, 1, "b1"), c.backend(t, 2, "b2"), c.backend(t, 3, "b3")
			const np = 30081
			c.nodePort(t, "spread", both, np, "", b1, b2, b3)

			const flows = 8
			got := map[string]map[uint16][]string{} // proto -> client port -> backend per entry node
			for _, proto := range []string{"tcp", "udp"} {
				got[proto] = map[uint16][]string{}
				// Entry nodes in the outer loop: a flow's next connection
				// (same 4-tuple at the pod) comes only after the others.
				for entry := 1; entry <= 3; entry++ {
					for i := range flows {
						src := netip.AddrPortFrom(c.client.IP, uint16(41000+i))
						dst := netip.AddrPortFrom(c.node(entry).IP, np)
						a, err := request{proto: proto, src: src}.do(c.client, dst)
						if err != nil {
							t.Fatalf("%s from %s via node %d: %v", proto, src, entry, err)
						}
						if a.peer != src || a.from != dst {
							t.Errorf("%s from %s via node %d: backend saw %s, answer from %s", proto, src, entry, a.peer, a.from)
						}
						got[proto][src.Port()] = append(got[proto][src.Port()], a.backend)
					}
				}
			}
			seen := map[string]bool{}
			for proto, byPort := range got {
				for port, bs := range byPort {
					if bs[0] != bs[1] || bs[0] != bs[2] {
						t.Errorf("%s flow from port %d reached %v through nodes 1, 2, 3", proto, port, bs)
					}
					seen[bs[0]] = true
				}
			}
			t.Logf("backends per flow: %v", got)
			if len(seen) < 2 {
				t.Errorf("%d flows all reached %v: the hash does not spread", 2*flows, seen)
			}
		})
	}
}

// mode: snat: node 1 SNATs and DNATs, the backend sees node 1, and the
// replies come back through node 1.
func TestSNATMode(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{nativeConflist, vxlanConflist} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, mode, dsrKeys(map[string]any{"mode": "snat"}))
			web := c.backend(t, 2, "web")
			const np = 30080
			c.nodePort(t, "web", both, np, "", web)
			svc := netip.AddrPortFrom(c.node(1).IP, np)
			n1MAC := c.nodeMAC(t, 1)
			before := c.counters(t, 1)

			cap1 := c.capture(t, c.node(1).UnderlayPort())
			for _, proto := range []string{"tcp", "udp"} {
				a, err := request{proto: proto}.do(c.client, svc)
				if err != nil {
					t.Fatalf("%s: %v", proto, err)
				}
				if a.backend != "web" || a.from != svc || a.peer.Addr() != c.node(1).IP {
					t.Errorf("%s answer %+v: want web, from %s, the backend seeing node 1", proto, a, svc)
				}
			}
			on1 := cap1.Stop(t)
			// The replies come back to node 1 from the pod, and leave it for
			// the client from the service address.
			in := match(on1, func(f *packet.Frame) bool { return f.Src == web.IP && f.Dst == c.node(1).IP })
			out := match(on1, func(f *packet.Frame) bool {
				src, _ := f.AddrPorts()
				return src == svc && f.Dst == c.client.IP && f.SrcMAC == n1MAC
			})
			if len(in) < 2 || len(out) < 2 {
				t.Errorf("node 1's port: %d replies from the pod, %d to the client, want 2 each:%s", len(in), len(out), dump(on1))
			}
			if opt := match(on1, func(f *packet.Frame) bool { return f.Option(optType) != nil }); len(opt) > 0 {
				t.Errorf("mode snat sent DSR options:%s", dump(opt))
			}
			after := c.counters(t, 1)
			requireCounterUp(t, "node 1", before, after, ctrSNATForward, 2)
			requireCounterUp(t, "node 1", before, after, ctrSNATReply, 2)
			requireCounterSame(t, "node 1", before, after, ctrDSROptAdded, ctrSNATFallback, ctrDropNAT, ctrDropSNATPorts)
		})
	}
}

// externalTrafficPolicy Local: a node serves from its own backends only,
// keeping the client's address (and port); a node without one refuses.
func TestLocalPolicy(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nativeConflist)
	l2a, l2b, l3 := c.backend(t, 2, "l2a"), c.backend(t, 2, "l2b"), c.backend(t, 3, "l3")
	const np = 30082
	c.nodePort(t, "local", both, np, "Local", l2a, l2b, l3)

	for _, proto := range []string{"tcp", "udp"} {
		served := map[string]int{}
		for i := range 8 {
			src := netip.AddrPortFrom(c.client.IP, uint16(42000+i))
			a, err := request{proto: proto, src: src}.do(c.client, netip.AddrPortFrom(c.node(2).IP, np))
			if err != nil {
				t.Fatalf("%s via node 2 (two local backends): %v", proto, err)
			}
			if a.peer != src {
				t.Errorf("%s via node 2: the backend saw %s, want the client %s", proto, a.peer, src)
			}
			served[a.backend]++
		}
		if served["l3"] > 0 || served["l2a"]+served["l2b"] != 8 {
			t.Errorf("%s via node 2 served by %v: want node 2's backends only", proto, served)
		}
		a, err := request{proto: proto}.do(c.client, netip.AddrPortFrom(c.node(3).IP, np))
		if err != nil || a.backend != "l3" || a.peer.Addr() != c.client.IP {
			t.Errorf("%s via node 3: %+v, %v; want l3, seeing the client", proto, a, err)
		}

		before := c.counters(t, 1)
		if a, err := (request{proto: proto, timeout: 500 * time.Millisecond}).do(c.client, netip.AddrPortFrom(c.node(1).IP, np)); err == nil {
			t.Errorf("%s via node 1, which has no local backend, was served: %+v", proto, a)
		}
		requireCounterUp(t, "node 1", before, c.counters(t, 1), ctrDropNoBackend, 1)
	}
}

// A request that already carries IP options, or that the option would
// make too big for the MTU (the overlay's in VXLAN mode), goes with SNAT
// instead: served, never dropped.
func TestSNATFallback(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{nativeConflist, vxlanConflist} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			testSNATFallback(t, mode)
		})
	}
}

func testSNATFallback(t *testing.T, mode string) {
	c := newCluster(t, mode)
	web := c.backend(t, 2, "web")
	const np = 30080
	c.nodePort(t, "web", both, np, "", web)
	mtu := c.node(1).LinkMTU(t, harness.NodeDevice)
	if mode == vxlanConflist {
		mtu = c.node(1).LinkMTU(t, "braid_vxlan")
	}
	svc := netip.AddrPortFrom(c.node(1).IP, np)
	// Record route with two free slots: 3 + 8 bytes, padded to 12.
	rr := []byte{7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0}

	for _, tc := range []struct {
		name string
		r    request
	}{
		{"TCP with IP options", request{proto: "tcp", ipOpts: rr}},
		{"UDP with IP options", request{proto: "udp", ipOpts: rr}},
		{"UDP filling the MTU", request{proto: "udp", payload: mtu - 20 - 8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := c.counters(t, 1)
			cap1 := c.capture(t, c.node(1).UnderlayPort())
			a, err := tc.r.do(c.client, svc)
			frames := cap1.Stop(t)
			if err != nil {
				t.Fatalf("%v\nnode 1's port:%s", err, dump(frames))
			}
			if a.backend != "web" || a.from != svc || a.peer.Addr() != c.node(1).IP {
				t.Errorf("answer %+v: want web, from %s, the backend seeing node 1 (SNAT)", a, svc)
			}
			after := c.counters(t, 1)
			requireCounterUp(t, "node 1", before, after, ctrSNATFallback, 1)
			requireCounterUp(t, "node 1", before, after, ctrSNATReply, 1)
			requireCounterSame(t, "node 1", before, after, ctrDSROptAdded, ctrDropNAT, ctrDropSNATPorts, ctrDropNoBackend)
			if opt := match(frames, func(f *packet.Frame) bool { return f.Option(optType) != nil }); len(opt) > 0 {
				t.Errorf("a DSR option was sent:%s", dump(opt))
			}
		})
	}
	// Options that appear only after a DSR handshake change nothing: the
	// flow stays DSR (switching it to SNAT mid-way would break it).
	t.Run("TCP with IP options after the handshake", func(t *testing.T) {
		before := c.counters(t, 1)
		a, err := request{proto: "tcp", lateOpts: rr}.do(c.client, svc)
		if err != nil {
			t.Fatal(err)
		}
		if a.backend != "web" || a.from != svc || a.peer.Addr() != c.client.IP {
			t.Errorf("answer %+v: want web, from %s, the backend seeing the client (DSR)", a, svc)
		}
		after := c.counters(t, 1)
		requireCounterUp(t, "node 1", before, after, ctrDSROptAdded, 1)
		requireCounterSame(t, "node 1", before, after, ctrSNATFallback, ctrSNATForward)
	})
	// And without options, the same service is DSR again.
	before := c.counters(t, 1)
	if a, err := (request{proto: "udp"}).do(c.client, svc); err != nil || a.peer.Addr() != c.client.IP {
		t.Fatalf("%+v, %v", a, err)
	}
	requireCounterUp(t, "node 1", before, c.counters(t, 1), ctrDSROptAdded, 1)
}

// A pod that sends a 0x9a option itself is forging one: dropped on its
// host veth. Other options pass.
func TestForgedOptionFromPod(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nativeConflist)
	evil := c.chain(1).AddPod(t, "evil")
	victim := c.backend(t, 2, "victim")
	dst := netip.AddrPortFrom(victim.IP, backendPort)
	from := netip.AddrPortFrom(evil.IP, 43000)

	// The forged option names node 1 and a node port, as a real one would.
	forged := dsrOption(c.node(1).IP, 30080)
	for _, tc := range []struct {
		name   string
		opts   []byte
		served bool
	}{
		{"no options", nil, true},
		{"forged DSR option", forged, false},
		{"other options", []byte{7, 7, 4, 0, 0, 0, 0}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := c.counters(t, 1)
			h := &harness.Host{NS: evil.NS, IP: evil.IP} // the pod as a sender
			a, err := request{proto: "udp", src: from, ipOpts: tc.opts, timeout: 700 * time.Millisecond}.do(h, dst)
			after := c.counters(t, 1)
			switch {
			case tc.served && err != nil:
				t.Errorf("not served: %v", err)
			case tc.served && a.backend != "victim":
				t.Errorf("answer %+v", a)
			case !tc.served && err == nil:
				t.Errorf("the forged option reached the victim: %+v", a)
			}
			if tc.served {
				requireCounterSame(t, "node 1", before, after, ctrDropForgedOpt)
			} else {
				requireCounterUp(t, "node 1", before, after, ctrDropForgedOpt, 1)
			}
		})
	}
	if got := c.counters(t, 2)[ctrOptAccepted]; got != 0 {
		t.Errorf("node 2 accepted %d options", got)
	}
}

// The node-port range: `braid service add` and `apply` refuse a node port
// outside --node-port-range; dsr serves only node ports inside its
// nodePortRange and says which it ignores.
func TestNodePortRange(t *testing.T) {
	t.Parallel()
	topo := harness.New(t)
	n := topo.AddNode(t)
	ch := n.Conflist(t, nativeConflist, socketLBCgroup(t, topo, n), dsrKeys(map[string]any{"nodePortRange": "8000-9000"}))
	client := topo.AddClient(t, 1)
	web := ch.AddPod(t, "web")
	serveTCP(t, web.NS, "web")
	backend := netip.AddrPortFrom(web.IP, backendPort).String()

	add := func(name string, nodePort, portRange string) error {
		_, err := n.TryBraid(t, "service", "add", name, "--vip", "198.18.100.10", "--port", nodePort,
			"--backend", backend, "--type", "NodePort", "--node-port", nodePort, "--node-port-range", portRange)
		return err
	}
	if err := add("low", "8080", "30000-32767"); err == nil || !strings.Contains(err.Error(), "outside the node-port range") {
		t.Errorf("node port 8080 with the default range: %v, want refused", err)
	}
	if err := add("low", "8080", "8000-9000"); err != nil {
		t.Fatal(err)
	}
	if err := add("high", "30080", "30000-32767"); err != nil {
		t.Fatal(err)
	}
	if err := add("junk", "8081", "8000-9000x"); err == nil || !strings.Contains(err.Error(), "is not a port range") {
		t.Errorf("--node-port-range 8000-9000x: %v, want refused", err)
	}
	// `service apply` checks every NodePort service of its file the same way.
	svc := store.Service{Name: "applied", VIP: netip.MustParseAddr("198.18.100.11"), Port: 8090, Protocol: store.TCP,
		Type: store.NodePort, NodePort: 8090, Backends: []store.Backend{{IP: web.IP, Port: backendPort}}}
	file := filepath.Join(t.TempDir(), "services.json")
	if raw, err := json.Marshal([]store.Service{svc}); err != nil || os.WriteFile(file, raw, 0o600) != nil {
		t.Fatal(err)
	}
	if _, err := n.TryBraid(t, "service", "apply", "-f", file); err == nil || !strings.Contains(err.Error(), "service applied: node port 8090 is outside the node-port range 30000-32767") {
		t.Errorf("apply with node port 8090 and the default range: %v, want refused", err)
	}
	n.Braid(t, "service", "apply", "-f", file, "--node-port-range", "8000-9000")
	// A ClusterIP service has no node port to keep from the others.
	if _, err := n.TryBraid(t, "service", "add", "cip", "--vip", "198.18.100.12", "--port", "80", "--backend", backend,
		"--node-port", "30081"); err == nil || !strings.Contains(err.Error(), "a ClusterIP service has no node port (30081)") {
		t.Errorf("ClusterIP service with --node-port: %v, want refused", err)
	}
	out, err := ch.Sync(t)
	if err == nil || !bytes.Contains(out, []byte("node port 30080 is outside nodePortRange 8000-9000")) {
		t.Errorf("sync with a service outside dsr's range: %v\n%s", err, out)
	}
	for _, port := range []uint16{8080, 8090} {
		if a, err := (request{proto: "tcp"}).do(client, netip.AddrPortFrom(n.IP, port)); err != nil || a.backend != "web" {
			t.Errorf("node port %d, inside nodePortRange: %+v, %v", port, a, err)
		}
	}
	if a, err := (request{proto: "tcp", timeout: 500 * time.Millisecond}).do(client, netip.AddrPortFrom(n.IP, 30080)); err == nil {
		t.Errorf("node port 30080, outside nodePortRange, was served: %+v", a)
	}
}
