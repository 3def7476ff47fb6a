package main

// dsr's programs run on crafted frames with BPF_PROG_TEST_RUN, their maps
// filled by hand (not pinned). The native forward path's bpf_fib_lookup
// resolves in the test thread's network namespace, so those cases run in a
// private one with a route and a neighbour (see router_test.go).
//
// The node under test is node 1 (198.18.0.1) when it is the entry node and
// node 2 (198.18.0.2) when it holds the backend: the settings say which.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/internal/packet"
	"github.com/braid-cni/braid/internal/testenv"
	"github.com/braid-cni/braid/plugins/counters"
	"github.com/cilium/ebpf"
)

// Verdicts as test_run reports them (a u32).
const (
	verdictShot     = 2
	verdictRedirect = 7
	verdictNext     = 0xffffffff // TCX_NEXT, -1
)

// Counter indices of bpf/dsr.c.
const (
	ctrLocalDeliver     = int(counters.DSRCounterCNT_LOCAL_DELIVER)
	ctrDSRForward       = int(counters.DSRCounterCNT_DSR_FORWARD)
	ctrDSROptAdded      = int(counters.DSRCounterCNT_DSR_OPT_ADDED)
	ctrSNATForward      = int(counters.DSRCounterCNT_SNAT_FORWARD)
	ctrSNATFallback     = int(counters.DSRCounterCNT_SNAT_FALLBACK)
	ctrOptAccepted      = int(counters.DSRCounterCNT_OPT_ACCEPTED)
	ctrReplyRewrite     = int(counters.DSRCounterCNT_REPLY_REWRITE)
	ctrSNATReply        = int(counters.DSRCounterCNT_SNAT_REPLY)
	ctrDropNoBackend    = int(counters.DSRCounterCNT_DROP_NO_BACKEND)
	ctrDropForgedOpt    = int(counters.DSRCounterCNT_DROP_FORGED_OPT)
	ctrDropNAT          = int(counters.DSRCounterCNT_DROP_NAT)
	ctrDropSNATPorts    = int(counters.DSRCounterCNT_DROP_SNAT_PORTS)
	ctrPass             = int(counters.DSRCounterCNT_PASS)
	ctrDropTunnel       = int(counters.DSRCounterCNT_DROP_TUNNEL)
	ctrExpired          = int(counters.DSRCounterCNT_EXPIRED)
	ctrEstablished      = int(counters.DSRCounterCNT_ESTABLISHED)
	ctrDropNoTable      = int(counters.DSRCounterCNT_DROP_NO_TABLE)
	ctrDropTTL          = int(counters.DSRCounterCNT_DROP_TTL)
	ctrDropDeliver      = int(counters.DSRCounterCNT_DROP_DELIVER)
	ctrDropParse        = int(counters.DSRCounterCNT_DROP_PARSE)
	ctrFragPassed       = int(counters.DSRCounterCNT_FRAG_PASSED)
	ctrDropFragNodeport = int(counters.DSRCounterCNT_DROP_FRAG_NODEPORT)
)

// skbContext is the head of struct __sk_buff, up to ifindex: test_run takes
// a prefix and requires every field it does not support to be zero.
type skbContext struct {
	Len, PktType, Mark, QueueMapping, Protocol, VlanPresent, VlanTCI, VlanProto uint32
	Priority, IngressIfindex, Ifindex                                           uint32
}

var (
	node1  = netip.MustParseAddr("198.18.0.1")
	node2  = netip.MustParseAddr("198.18.0.2")
	node3  = netip.MustParseAddr("198.18.0.3")
	client = netip.MustParseAddrPort("198.18.1.10:40000")
	// remote is a backend on node 2 (not in the endpoint map);
	// local a pod on this node, behind ifindex 1 (lo, which test_run accepts).
	remote = netip.MustParseAddrPort("198.19.2.5:8080")
	local  = netip.MustParseAddrPort("198.19.1.5:8080")

	localInfo = maps.EndpointInfo{Ifindex: 1, ID: 1,
		PodMAC: packet.MAC{0x02, 0, 0, 0, 0x0a, 0x01}, HostMAC: packet.MAC{0x02, 0, 0, 0, 0x0a, 0xfe}}
	// MACs of the frames as they arrive on the node device.
	devMAC  = packet.MAC{0x02, 0, 0, 0, 0, 0x01}
	peerMAC = packet.MAC{0x02, 0, 0, 0, 0, 0xcc}
)

// Node ports of the test services.
const (
	npRemote      = 30080 // TCP and UDP: one backend, remote
	npLocal       = 30081 // TCP: one backend, local
	npPolicyLocal = 30082 // TCP, Local policy, table names a remote backend
	npEmpty       = 30083 // TCP, no backends
	testTableSize = 7
)

// svcOpt is the option node 1 adds for npRemote: 9a 08, the port, the address.
var svcOpt = dsrOption(node1, npRemote)

func dsrOption(addr netip.Addr, port uint16) []byte {
	a := addr.As4()
	return []byte{0x9a, 8, byte(port >> 8), byte(port), a[0], a[1], a[2], a[3]}
}

type testDP struct {
	objs dsrObjects
}

// loadDSR loads dsr's objects with private maps, the endpoint map holding
// the local pod, the test services and the trusted nodes 1..3.
func loadDSR(t testing.TB) *testDP {
	t.Helper()
	testenv.RequireRoot(t)
	spec, err := loadDsr()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	eps, err := ebpf.NewMap(maps.EndpointsSpec())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eps.Close() })
	if err := eps.Put(maps.Key(local.Addr()), localInfo); err != nil {
		t.Fatal(err)
	}
	d := &testDP{}
	err = spec.LoadAndAssign(&d.objs, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{dsrMapEndpoints: eps}})
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		t.Fatalf("verifier rejected the programs:\n%+v", ve)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.objs.Close() })

	d.service(t, 1, npRemote, packet.ProtoTCP, 0, remote)
	d.service(t, 2, npRemote, packet.ProtoUDP, 0, remote)
	d.service(t, 3, npLocal, packet.ProtoTCP, 0, local)
	d.service(t, 4, npPolicyLocal, packet.ProtoTCP, svcLocal, remote)
	d.service(t, 5, npEmpty, packet.ProtoTCP, 0)
	for _, n := range []netip.Addr{node1, node2, node3} {
		if err := d.objs.DsrNodes.Put(maps.IPv4Word(n), uint32(0)); err != nil {
			t.Fatal(err)
		}
	}
	// Node 2's and node 3's pod CIDRs, as the store's peers give them.
	for i, n := range []netip.Addr{node2, node3} {
		k := dsrPeerCidr{Prefixlen: 24, Ip: maps.IPv4Word(netip.AddrFrom4([4]byte{198, 19, byte(2 + i), 0}))}
		if err := d.objs.DsrPeerCidrs.Put(k, maps.IPv4Word(n)); err != nil {
			t.Fatal(err)
		}
	}
	d.settings(t, dsrDsrConf{NodeIp: maps.IPv4Word(node1), DeviceMtu: 1500})
	return d
}

// service writes a node port whose whole Maglev table is its backends in
// turn (or no table, with none).
func (d *testDP) service(t testing.TB, id uint32, port uint16, proto uint8, flags uint32, backends ...netip.AddrPort) {
	t.Helper()
	if len(backends) > 0 {
		table, err := ebpf.NewMap(tableSpec(testTableSize))
		if err != nil {
			t.Fatal(err)
		}
		defer table.Close()
		for i := range testTableSize {
			b := backends[i%len(backends)]
			if err := table.Put(uint32(i), dsrAddrPort{Ip: maps.IPv4Word(b.Addr()), Port: maps.Port16(b.Port())}); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.objs.DsrMaglev.Put(id, table); err != nil {
			t.Fatal(err)
		}
	}
	k := dsrNodeportKey{Port: maps.Port16(port), Proto: proto}
	v := dsrNodeportSvc{Id: id, Count: uint32(len(backends)), Flags: flags, TableSize: testTableSize}
	if err := d.objs.DsrNodeports.Put(k, v); err != nil {
		t.Fatal(err)
	}
}

// settings writes c, with the default lifetimes, VNI 1 and SNAT ports
// 1024-29999 where c leaves them zero.
func (d *testDP) settings(t testing.TB, c dsrDsrConf) {
	t.Helper()
	if c.TcpSynNs == 0 {
		c.TcpSynNs, c.TcpEstNs = uint64(defaultTCPSyn), uint64(defaultTCPEstablished)
		c.TcpCloseNs, c.TcpResetNs, c.UdpNs = uint64(defaultTCPClose), uint64(defaultTCPReset), uint64(defaultUDP)
	}
	if c.Vni == 0 {
		c.Vni = 1
	}
	if c.SnatSpan == 0 {
		c.SnatLo, c.SnatSpan = 1024, 29999-1024+1
	}
	if err := d.objs.DsrSettings.Put(uint32(0), c); err != nil {
		t.Fatal(err)
	}
}

func (d *testDP) counters(t testing.TB) []uint64 {
	t.Helper()
	c, err := maps.Counters(d.objs.Counters)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runner runs a program on a frame; in the private netns for fib lookups,
// or on any thread.
type runner func(prog *ebpf.Program, frame []byte, ctx skbContext) (uint32, []byte, error)

func runHere(prog *ebpf.Program, frame []byte, ctx skbContext) (uint32, []byte, error) {
	opts := &ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+64), Context: ctx}
	ret, err := prog.Run(opts)
	return ret, opts.DataOut, err
}

func verdictName(v uint32) string {
	switch v {
	case verdictShot:
		return "TC_ACT_SHOT"
	case verdictRedirect:
		return "TC_ACT_REDIRECT"
	case verdictNext:
		return "TCX_NEXT"
	}
	return fmt.Sprint(v)
}

// run runs prog on frame and checks the verdict and that exactly the
// counters in want went up by one; it returns the frame as the program left
// it, parsed.
func (d *testDP) run(t *testing.T, r runner, prog *ebpf.Program, frame []byte, ctx skbContext, verdict uint32, want ...int) *packet.Frame {
	t.Helper()
	out := d.runRaw(t, r, prog, frame, ctx, verdict, want...)
	f, err := packet.Parse(out)
	if err != nil {
		t.Fatalf("output frame: %v\n% x", err, out)
	}
	return f
}

// runRaw is run for frames that do not parse: the frame out as it is.
func (d *testDP) runRaw(t *testing.T, r runner, prog *ebpf.Program, frame []byte, ctx skbContext, verdict uint32, want ...int) []byte {
	t.Helper()
	before := d.counters(t)
	v, out, err := r(prog, frame, ctx)
	if err != nil {
		t.Fatalf("test_run: %v", err)
	}
	if v != verdict {
		t.Errorf("verdict %s, want %s", verdictName(v), verdictName(verdict))
	}
	after := d.counters(t)
	for i := range after {
		exp := before[i]
		for _, w := range want {
			if w == i {
				exp++
			}
		}
		if after[i] != exp {
			t.Errorf("counter %s went from %d to %d, want %d", counterNames[i], before[i], after[i], exp)
		}
	}
	return out
}

// ipFrame is an Ethernet frame around an IPv4 header h and an L4 segment.
func ipFrame(h packet.IPv4, l4 []byte) []byte {
	return packet.Ethernet(devMAC, peerMAC, packet.EtherTypeIPv4, h.Marshal(l4))
}

func tcpFrame(src, dst netip.AddrPort, flags uint8, opts []byte, payload []byte) []byte {
	h := packet.IPv4{Src: src.Addr(), Dst: dst.Addr(), Proto: packet.ProtoTCP, ID: 7, Frag: 0x4000, Options: opts}
	return ipFrame(h, packet.TCP(src.Addr(), dst.Addr(), src.Port(), dst.Port(), flags, 1000, 0, payload))
}

func udpFrame(src, dst netip.AddrPort, opts []byte, payload []byte) []byte {
	h := packet.IPv4{Src: src.Addr(), Dst: dst.Addr(), Proto: packet.ProtoUDP, ID: 7, Frag: 0x4000, Options: opts}
	return ipFrame(h, packet.UDP(src.Addr(), dst.Addr(), src.Port(), dst.Port(), payload))
}

func npAddr(n netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(n, port) }

// requireRewritten checks the frame's addresses and that both checksums
// verify.
func requireRewritten(t *testing.T, f *packet.Frame, src, dst netip.AddrPort) {
	t.Helper()
	gotSrc, gotDst := f.AddrPorts()
	if gotSrc != src || gotDst != dst {
		t.Errorf("%s -> %s, want %s -> %s", gotSrc, gotDst, src, dst)
	}
	if !f.IPChecksumOK() {
		t.Errorf("IP header checksum does not verify: % x", f.IP)
	}
	if !f.L4ChecksumOK() {
		t.Errorf("L4 checksum %#04x does not verify", f.L4Checksum())
	}
}

// requireOption checks that the frame carries exactly the DSR option, its
// TTL one less (a router's hop), and
// that the rest of the IP packet in went through unchanged (but for the
// addresses and checksums the NAT changed).
func requireOption(t *testing.T, f *packet.Frame, in *packet.Frame, opt []byte) {
	t.Helper()
	if f.IHL != 7 {
		t.Errorf("IHL %d, want 7", f.IHL)
	}
	if !bytes.Equal(f.Options, opt) {
		t.Errorf("options % x, want % x", f.Options, opt)
	}
	if f.TotLen != in.TotLen+8 {
		t.Errorf("total length %d, want %d (+8)", f.TotLen, in.TotLen+8)
	}
	if len(f.L4) != len(in.L4) || !bytes.Equal(f.Payload, in.Payload) {
		t.Errorf("payload changed: % x, was % x", f.Payload, in.Payload)
	}
	if f.TTL != in.TTL-1 || f.Proto != in.Proto || binary.BigEndian.Uint16(f.IP[4:]) != binary.BigEndian.Uint16(in.IP[4:]) {
		t.Errorf("IP header fields changed: % x, was % x", f.IP, in.IP)
	}
}

// flow is the service address of a flow, answered or not.
func (d *testDP) flow(t *testing.T, key dsrFlowKey) (dsrAddrPort, bool) {
	t.Helper()
	for _, m := range []*ebpf.Map{d.objs.DsrFlows, d.objs.DsrFlowsNew} {
		var v dsrFlowVal
		err := m.Lookup(key, &v)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return v.Svc, true
	}
	return dsrAddrPort{}, false
}

func flowKey(c, backend netip.AddrPort, proto uint8) dsrFlowKey {
	return dsrFlowKey{ClientIp: maps.IPv4Word(c.Addr()), BackendIp: maps.IPv4Word(backend.Addr()),
		ClientPort: maps.Port16(c.Port()), BackendPort: maps.Port16(backend.Port()), Proto: proto}
}

// liveFlow is an established flow's entry, an hour from expiring.
func liveFlow(svc dsrAddrPort) dsrFlowVal {
	return dsrFlowVal{Svc: svc, State: 1, Expires: now() + uint64(time.Hour)}
}

func svcAddr(a netip.AddrPort) dsrAddrPort {
	return dsrAddrPort{Ip: maps.IPv4Word(a.Addr()), Port: maps.Port16(a.Port())}
}

// The entry node in native mode: a TCP SYN to the node port of a service
// whose backend is on node 2 is DNATed, gets the option, and is sent to
// node 2 through the fib (a route and neighbour in the private netns).
func TestNodePortNativeInsertsOption(t *testing.T) {
	d := loadDSR(t)
	rt := newRouter(t)
	ctx := skbContext{Ifindex: rt.in, IngressIfindex: rt.in}
	svc := npAddr(node1, npRemote)

	t.Run("TCP SYN", func(t *testing.T) {
		in := tcpFrame(client, svc, packet.SYN, nil, nil)
		out := d.run(t, rt.run, d.objs.FromNetdev, in, ctx, verdictRedirect, ctrDSRForward, ctrDSROptAdded)
		requireOption(t, out, packet.MustParse(in), svcOpt)
		requireRewritten(t, out, client, remote)
		if out.TCPFlags != packet.SYN {
			t.Errorf("TCP flags %#x", out.TCPFlags)
		}
		// The fib's answer: to node 2's MAC, from the egress device's.
		if out.DstMAC != rt.node2MAC || out.SrcMAC != rt.outMAC {
			t.Errorf("MACs %x > %x, want %x > %x", out.SrcMAC, out.DstMAC, rt.outMAC, rt.node2MAC)
		}
	})
	t.Run("UDP datagram", func(t *testing.T) {
		in := udpFrame(client, svc, nil, []byte("every datagram carries the option"))
		out := d.run(t, rt.run, d.objs.FromNetdev, in, ctx, verdictRedirect, ctrDSRForward, ctrDSROptAdded)
		requireOption(t, out, packet.MustParse(in), dsrOption(node1, npRemote))
		requireRewritten(t, out, client, remote)
	})
	t.Run("TCP after the SYN: no option", func(t *testing.T) {
		in := tcpFrame(client, svc, packet.ACK|packet.PSH, nil, []byte("data"))
		out := d.run(t, rt.run, d.objs.FromNetdev, in, ctx, verdictRedirect, ctrDSRForward)
		if out.IHL != 5 || out.TotLen != packet.MustParse(in).TotLen {
			t.Errorf("IHL %d, length %d: a non-SYN segment grew", out.IHL, out.TotLen)
		}
		requireRewritten(t, out, client, remote)
	})
	t.Run("no neighbour yet: redirect_neigh", func(t *testing.T) {
		// A service whose backend is on node 3, which has not been resolved.
		b3 := netip.MustParseAddrPort("198.19.3.5:8080")
		d.service(t, 9, 30090, packet.ProtoTCP, 0, b3)
		in := tcpFrame(client, npAddr(node1, 30090), packet.SYN, nil, nil)
		out := d.run(t, rt.run, d.objs.FromNetdev, in, ctx, verdictRedirect, ctrDSRForward, ctrDSROptAdded)
		requireOption(t, out, packet.MustParse(in), dsrOption(node1, 30090))
		requireRewritten(t, out, client, b3)
		// bpf_redirect_neigh resolves the MACs after the program.
		if out.DstMAC != devMAC || out.SrcMAC != peerMAC {
			t.Errorf("MACs changed to %x > %x: the fib answered, not redirect_neigh", out.SrcMAC, out.DstMAC)
		}
	})
	t.Run("no route: the stack decides", func(t *testing.T) {
		b := netip.MustParseAddrPort("198.19.200.5:8080")
		d.service(t, 10, 30091, packet.ProtoTCP, 0, b)
		in := tcpFrame(client, npAddr(node1, 30091), packet.SYN, nil, nil)
		out := d.run(t, rt.run, d.objs.FromNetdev, in, ctx, verdictNext, ctrDSRForward, ctrDSROptAdded)
		requireRewritten(t, out, client, b)
	})
}

// The entry node in overlay mode: the same rewrite, then into the VXLAN
// device (whose egress program sets the tunnel key). No fib lookup.
func TestNodePortOverlayInsertsOption(t *testing.T) {
	d := loadDSR(t)
	d.settings(t, dsrDsrConf{NodeIp: maps.IPv4Word(node1), DeviceMtu: 1500, OverlayIfindex: 4242})
	in := tcpFrame(client, npAddr(node1, npRemote), packet.SYN, nil, nil)
	out := d.run(t, runHere, d.objs.FromNetdev, in, skbContext{}, verdictRedirect, ctrDSRForward, ctrDSROptAdded)
	requireOption(t, out, packet.MustParse(in), svcOpt)
	requireRewritten(t, out, client, remote)
}

// The backend's node: an option from a known node, for a pod here, records
// the flow and delivers the packet to the pod; anything else is not
// honoured.
func TestAcceptOption(t *testing.T) {
	d := loadDSR(t)
	d.settings(t, dsrDsrConf{NodeIp: maps.IPv4Word(node2), DeviceMtu: 1500})

	t.Run("from a known node, to a pod here", func(t *testing.T) {
		in := tcpFrame(client, local, packet.SYN, svcOpt, nil)
		out := d.run(t, runHere, d.objs.FromNetdev, in, skbContext{}, verdictRedirect, ctrOptAccepted)
		got, ok := d.flow(t, flowKey(client, local, packet.ProtoTCP))
		if !ok || got != svcAddr(npAddr(node1, npRemote)) {
			t.Errorf("flow entry %+v (present %v), want %s:%d", got, ok, node1, npRemote)
		}
		// deliver_local: the pod's MACs, TTL one less, checksum fixed.
		if out.DstMAC != localInfo.PodMAC || out.SrcMAC != localInfo.HostMAC {
			t.Errorf("MACs %x > %x", out.SrcMAC, out.DstMAC)
		}
		if out.TTL != 63 || !out.IPChecksumOK() || !out.L4ChecksumOK() {
			t.Errorf("TTL %d, checksums ok %v/%v", out.TTL, out.IPChecksumOK(), out.L4ChecksumOK())
		}
	})
	t.Run("UDP", func(t *testing.T) {
		c := netip.MustParseAddrPort("198.18.1.11:5353")
		in := udpFrame(c, local, dsrOption(node3, 30099), []byte("x"))
		d.run(t, runHere, d.objs.FromNetdev, in, skbContext{}, verdictRedirect, ctrOptAccepted)
		if got, ok := d.flow(t, flowKey(c, local, packet.ProtoUDP)); !ok || got != svcAddr(npAddr(node3, 30099)) {
			t.Errorf("flow entry %+v (present %v)", got, ok)
		}
	})
	t.Run("naming an unknown node", func(t *testing.T) {
		c := netip.MustParseAddrPort("198.18.1.12:40000")
		in := tcpFrame(c, local, packet.SYN, dsrOption(netip.MustParseAddr("198.18.1.99"), 30080), nil)
		out := d.run(t, runHere, d.objs.FromNetdev, in, skbContext{}, verdictNext, ctrDropForgedOpt, ctrPass)
		if _, ok := d.flow(t, flowKey(c, local, packet.ProtoTCP)); ok {
			t.Error("a flow was recorded for a forged option")
		}
		if !bytes.Equal(out.IP, packet.MustParse(in).IP) {
			t.Error("the packet was changed")
		}
	})
	t.Run("for a pod not on this node", func(t *testing.T) {
		in := tcpFrame(client, remote, packet.SYN, svcOpt, nil)
		d.run(t, runHere, d.objs.FromNetdev, in, skbContext{}, verdictNext, ctrDropForgedOpt, ctrPass)
		if _, ok := d.flow(t, flowKey(client, remote, packet.ProtoTCP)); ok {
			t.Error("a flow was recorded for a pod elsewhere")
		}
	})
	t.Run("another option of the same size", func(t *testing.T) {
		c := netip.MustParseAddrPort("198.18.1.13:40000")
		rr := []byte{7, 7, 4, 0, 0, 0, 0, 0} // record route, one slot
		d.run(t, runHere, d.objs.FromNetdev, tcpFrame(c, local, packet.SYN, rr, nil), skbContext{}, verdictNext, ctrPass)
		if _, ok := d.flow(t, flowKey(c, local, packet.ProtoTCP)); ok {
			t.Error("a flow was recorded without a DSR option")
		}
	})
	t.Run("no option: not dsr's", func(t *testing.T) {
		d.run(t, runHere, d.objs.FromNetdev, tcpFrame(client, local, packet.ACK, nil, nil), skbContext{}, verdictNext, ctrPass)
	})
}

// The backend's pod answers: from_container on its host veth gives the
// reply the service address as its source, with checksums fixed.
func TestReplyRewrite(t *testing.T) {
	d := loadDSR(t)
	d.settings(t, dsrDsrConf{NodeIp: maps.IPv4Word(node2), DeviceMtu: 1500})
	svc := npAddr(node1, npRemote)
	udpClient := netip.MustParseAddrPort("198.18.1.10:5353")
	for _, k := range []dsrFlowKey{flowKey(client, local, packet.ProtoTCP), flowKey(udpClient, local, packet.ProtoUDP)} {
		if err := d.objs.DsrFlows.Put(k, liveFlow(svcAddr(svc))); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("TCP SYN-ACK", func(t *testing.T) {
		out := d.run(t, runHere, d.objs.FromContainer, tcpFrame(local, client, packet.SYN|packet.ACK, nil, nil), skbContext{}, verdictNext, ctrReplyRewrite)
		requireRewritten(t, out, svc, client)
	})
	t.Run("TCP data", func(t *testing.T) {
		out := d.run(t, runHere, d.objs.FromContainer, tcpFrame(local, client, packet.ACK|packet.PSH, nil, []byte("reply")), skbContext{}, verdictNext, ctrReplyRewrite)
		requireRewritten(t, out, svc, client)
	})
	t.Run("UDP", func(t *testing.T) {
		out := d.run(t, runHere, d.objs.FromContainer, udpFrame(local, udpClient, nil, []byte("reply")), skbContext{}, verdictNext, ctrReplyRewrite)
		requireRewritten(t, out, svc, udpClient)
	})
	t.Run("UDP without checksum keeps none", func(t *testing.T) {
		in := udpFrame(local, udpClient, nil, []byte("reply"))
		in[len(in)-len("reply")-2], in[len(in)-len("reply")-1] = 0, 0
		out := d.run(t, runHere, d.objs.FromContainer, in, skbContext{}, verdictNext, ctrReplyRewrite)
		if out.L4Checksum() != 0 {
			t.Errorf("UDP checksum %#04x, want 0 (none)", out.L4Checksum())
		}
		requireRewritten(t, out, svc, udpClient)
	})
	t.Run("from this node's address: forwarded by the program", func(t *testing.T) {
		// The backend is on the entry node itself (or Local policy): the
		// reply's new source is the node's, which the stack would refuse.
		rt := newRouter(t)
		c := netip.MustParseAddrPort("198.18.1.10:40002")
		own := npAddr(node2, npLocal)
		if err := d.objs.DsrFlows.Put(flowKey(c, local, packet.ProtoTCP), liveFlow(svcAddr(own))); err != nil {
			t.Fatal(err)
		}
		ctx := skbContext{Ifindex: rt.in, IngressIfindex: rt.in}
		out := d.run(t, rt.run, d.objs.FromContainer, tcpFrame(local, c, packet.SYN|packet.ACK, nil, nil), ctx, verdictRedirect, ctrReplyRewrite)
		requireRewritten(t, out, own, c)
		if out.DstMAC != rt.clientMAC || out.SrcMAC != rt.outMAC {
			t.Errorf("MACs %x > %x, want %x > %x", out.SrcMAC, out.DstMAC, rt.outMAC, rt.clientMAC)
		}
	})
	t.Run("no flow: untouched", func(t *testing.T) {
		other := netip.MustParseAddrPort("198.18.1.10:40001")
		in := tcpFrame(local, other, packet.ACK, nil, nil)
		out := d.run(t, runHere, d.objs.FromContainer, in, skbContext{}, verdictNext)
		if !bytes.Equal(out.IP, packet.MustParse(in).IP) {
			t.Error("a reply with no flow was changed")
		}
	})
}

// Only nodes speak DSR: a pod's packet with a 0x9a option is dropped, one
// with other options is not.
func TestForgedOptionFromPod(t *testing.T) {
	d := loadDSR(t)
	d.settings(t, dsrDsrConf{NodeIp: maps.IPv4Word(node2), DeviceMtu: 1500})
	dst := netip.MustParseAddrPort("198.19.3.7:8080")
	d.run(t, runHere, d.objs.FromContainer, udpFrame(local, dst, svcOpt, []byte("forged")), skbContext{}, verdictShot, ctrDropForgedOpt)
	d.run(t, runHere, d.objs.FromContainer, tcpFrame(local, dst, packet.SYN, svcOpt, nil), skbContext{}, verdictShot, ctrDropForgedOpt)
	d.run(t, runHere, d.objs.FromContainer, udpFrame(local, dst, []byte{1, 1, 1, 0}, nil), skbContext{}, verdictNext)
}

// A node port packet that cannot take the option (it already has options,
// or would outgrow the MTU) is forwarded with SNAT; the backend's reply to
// node:snatPort goes back to the client from node:nodePort.
func TestSNATFallback(t *testing.T) {
	d := loadDSR(t)
	rt := newRouter(t)
	ctx := skbContext{Ifindex: rt.in, IngressIfindex: rt.in}
	svc := npAddr(node1, npRemote)
	nops := []byte{1, 1, 1, 0}

	t.Run("options present", func(t *testing.T) {
		in := tcpFrame(client, svc, packet.SYN, nops, nil)
		out := d.run(t, rt.run, d.objs.FromNetdev, in, ctx, verdictRedirect, ctrSNATFallback, ctrSNATForward)
		// The client's port (40000) is in the node's ephemeral range: the
		// SNAT port comes from the SNAT range instead.
		port := out.SrcPort
		if port < 1024 || port > 29999 {
			t.Errorf("SNAT port %d outside the SNAT range 1024-29999", port)
		}
		requireRewritten(t, out, npAddr(node1, port), remote)
		if out.IHL != 6 || !bytes.Equal(out.Options, nops) {
			t.Errorf("options changed: IHL %d, % x", out.IHL, out.Options)
		}
		// The reply, now from this node's own address, is forwarded by the
		// program (the stack would drop it as a martian): to the client.
		reply, rctx := rt.fromNode2(tcpFrame(remote, npAddr(node1, port), packet.SYN|packet.ACK, nil, nil))
		back := d.run(t, rt.run, d.objs.FromNetdev, reply, rctx, verdictRedirect, ctrSNATReply)
		requireRewritten(t, back, svc, client)
		if back.DstMAC != rt.clientMAC || back.SrcMAC != rt.outMAC {
			t.Errorf("reply MACs %x > %x, want %x > %x", back.SrcMAC, back.DstMAC, rt.outMAC, rt.clientMAC)
		}
		// The same reply from anyone but node 2 is dropped and counted.
		d.run(t, rt.run, d.objs.FromNetdev, reply, ctx, verdictShot, ctrDropTunnel)
		// The flow keeps SNAT when its next segments carry no options.
		ack := d.run(t, rt.run, d.objs.FromNetdev, tcpFrame(client, svc, packet.ACK, nil, nil), ctx, verdictRedirect, ctrSNATForward)
		requireRewritten(t, ack, npAddr(node1, port), remote)
	})
	t.Run("a DSR flow's later segments with options stay DSR", func(t *testing.T) {
		c := netip.MustParseAddrPort("198.18.1.10:40100")
		syn := d.run(t, rt.run, d.objs.FromNetdev, tcpFrame(c, svc, packet.SYN, nil, nil), ctx, verdictRedirect, ctrDSRForward, ctrDSROptAdded)
		requireRewritten(t, syn, c, remote)
		data := d.run(t, rt.run, d.objs.FromNetdev, tcpFrame(c, svc, packet.ACK|packet.PSH, nops, []byte("x")), ctx, verdictRedirect, ctrDSRForward)
		requireRewritten(t, data, c, remote)
		if !bytes.Equal(data.Options, nops) {
			t.Errorf("options % x, want the client's % x", data.Options, nops)
		}
	})
	t.Run("option would outgrow the MTU", func(t *testing.T) {
		c := netip.MustParseAddrPort("198.18.1.10:5353")
		in := udpFrame(c, svc, nil, make([]byte, 1500-20-8-4)) // 1496 bytes: +8 > 1500
		out := d.run(t, rt.run, d.objs.FromNetdev, in, ctx, verdictRedirect, ctrSNATFallback, ctrSNATForward)
		requireRewritten(t, out, npAddr(node1, c.Port()), remote)
		if out.IHL != 5 {
			t.Errorf("IHL %d, want 5", out.IHL)
		}
		// The same UDP flow stays with SNAT: the backend keeps seeing one peer.
		small := d.run(t, rt.run, d.objs.FromNetdev, udpFrame(c, svc, nil, []byte("x")), ctx, verdictRedirect, ctrSNATForward)
		requireRewritten(t, small, npAddr(node1, c.Port()), remote)
		// Another flow's datagram of exactly 1500 bytes with the option: DSR.
		other := netip.MustParseAddrPort("198.18.1.10:5354")
		fits := udpFrame(other, svc, nil, make([]byte, 1500-20-8-8))
		out = d.run(t, rt.run, d.objs.FromNetdev, fits, ctx, verdictRedirect, ctrDSRForward, ctrDSROptAdded)
		if out.TotLen != 1500 {
			t.Errorf("total length %d, want 1500", out.TotLen)
		}
	})
	t.Run("two clients, same source port: distinct SNAT ports", func(t *testing.T) {
		a := netip.MustParseAddrPort("198.18.1.20:41000")
		b := netip.MustParseAddrPort("198.18.1.21:41000")
		oa := d.run(t, rt.run, d.objs.FromNetdev, tcpFrame(a, svc, packet.SYN, nops, nil), ctx, verdictRedirect, ctrSNATFallback, ctrSNATForward)
		ob := d.run(t, rt.run, d.objs.FromNetdev, tcpFrame(b, svc, packet.SYN, nops, nil), ctx, verdictRedirect, ctrSNATFallback, ctrSNATForward)
		if oa.SrcPort == ob.SrcPort {
			t.Fatalf("both flows SNATed to port %d", oa.SrcPort)
		}
		for _, tc := range []struct {
			c    netip.AddrPort
			port uint16
		}{{a, oa.SrcPort}, {b, ob.SrcPort}} {
			// No neighbour entry for these clients: redirect_neigh.
			reply, rctx := rt.fromNode2(tcpFrame(remote, npAddr(node1, tc.port), packet.SYN|packet.ACK, nil, nil))
			back := d.run(t, rt.run, d.objs.FromNetdev, reply, rctx, verdictRedirect, ctrSNATReply)
			requireRewritten(t, back, svc, tc.c)
		}
		// The same flow again keeps its port (b's is not its first candidate).
		again := d.run(t, rt.run, d.objs.FromNetdev, tcpFrame(b, svc, packet.ACK, nil, nil), ctx, verdictRedirect, ctrSNATForward)
		if again.SrcPort != ob.SrcPort {
			t.Errorf("second packet of a flow SNATed to %d, first to %d", again.SrcPort, ob.SrcPort)
		}
	})
	t.Run("mode snat", func(t *testing.T) {
		d.settings(t, dsrDsrConf{NodeIp: maps.IPv4Word(node1), DeviceMtu: 1500, Mode: 1})
		defer d.settings(t, dsrDsrConf{NodeIp: maps.IPv4Word(node1), DeviceMtu: 1500})
		c := netip.MustParseAddrPort("198.18.1.30:42000")
		out := d.run(t, rt.run, d.objs.FromNetdev, tcpFrame(c, svc, packet.SYN, nil, nil), ctx, verdictRedirect, ctrSNATForward)
		requireRewritten(t, out, npAddr(node1, out.SrcPort), remote)
		if out.SrcPort == c.Port() || out.SrcPort < 1024 || out.SrcPort > 29999 {
			t.Errorf("SNAT port %d: want one of 1024-29999", out.SrcPort)
		}
		if out.IHL != 5 {
			t.Errorf("mode snat added an option: IHL %d", out.IHL)
		}
	})
	t.Run("reply to no SNAT flow: not dsr's", func(t *testing.T) {
		in := tcpFrame(remote, npAddr(node1, 45678), packet.ACK, nil, nil)
		out := d.run(t, rt.run, d.objs.FromNetdev, in, ctx, verdictNext)
		if !bytes.Equal(out.IP, packet.MustParse(in).IP) {
			t.Error("changed")
		}
	})
}

// Backend on the entry node itself: DNAT, flow recorded (the reply is
// rewritten by from_container), delivered to the pod.
func TestNodePortLocalBackend(t *testing.T) {
	d := loadDSR(t)
	in := tcpFrame(client, npAddr(node1, npLocal), packet.SYN, nil, nil)
	out := d.run(t, runHere, d.objs.FromNetdev, in, skbContext{}, verdictRedirect, ctrLocalDeliver)
	requireRewritten(t, out, client, local)
	if out.IHL != 5 || out.DstMAC != localInfo.PodMAC {
		t.Errorf("IHL %d, MAC %x", out.IHL, out.DstMAC)
	}
	if got, ok := d.flow(t, flowKey(client, local, packet.ProtoTCP)); !ok || got != svcAddr(npAddr(node1, npLocal)) {
		t.Errorf("flow %+v (present %v)", got, ok)
	}
}

// Local policy never leaves the node; a service with no backend refuses.
func TestNodePortRefuses(t *testing.T) {
	d := loadDSR(t)
	d.run(t, runHere, d.objs.FromNetdev, tcpFrame(client, npAddr(node1, npPolicyLocal), packet.SYN, nil, nil), skbContext{}, verdictShot, ctrDropNoBackend)
	d.run(t, runHere, d.objs.FromNetdev, tcpFrame(client, npAddr(node1, npEmpty), packet.SYN, nil, nil), skbContext{}, verdictShot, ctrDropNoBackend)
	// Not a node port at all, to the node: the stack's.
	d.run(t, runHere, d.objs.FromNetdev, tcpFrame(client, npAddr(node1, 22), packet.SYN, nil, nil), skbContext{}, verdictNext)
	// Not to the node: passed.
	d.run(t, runHere, d.objs.FromNetdev, tcpFrame(client, netip.MustParseAddrPort("198.18.0.9:30080"), packet.SYN, nil, nil), skbContext{}, verdictNext, ctrPass)
}

// Every node builds the same table (syncNodePorts, as Reconcile does) and
// hashes only what the flow keeps whichever node it enters: the same client
// address and port reach the same backend through node 1, 2 or 3.
func TestSameBackendWhicheverEntry(t *testing.T) {
	d := loadDSR(t)
	backends := []netip.AddrPort{
		netip.MustParseAddrPort("198.19.1.7:8080"), netip.MustParseAddrPort("198.19.2.7:8080"),
		netip.MustParseAddrPort("198.19.3.7:8080"), netip.MustParseAddrPort("198.19.3.8:8080"),
	}
	d.sync(t, syncer(t, d, 251), testService(11, 31000, backends))
	seen := map[netip.AddrPort]int{}
	for port := uint16(40000); port < 40064; port++ {
		c := netip.AddrPortFrom(client.Addr(), port)
		var first netip.AddrPort
		for i, n := range []netip.Addr{node1, node2, node3} {
			// Overlay mode: every backend is "remote" and nothing needs a fib.
			d.settings(t, dsrDsrConf{NodeIp: maps.IPv4Word(n), DeviceMtu: 1500, OverlayIfindex: 4242})
			v, out, err := runHere(d.objs.FromNetdev, tcpFrame(c, npAddr(n, 31000), packet.SYN, nil, nil), skbContext{})
			if err != nil || v != verdictRedirect {
				t.Fatalf("via %s: verdict %s, %v", n, verdictName(v), err)
			}
			_, got := packet.MustParse(out).AddrPorts()
			if i == 0 {
				first = got
				seen[got]++
			} else if got != first {
				t.Errorf("client port %d: backend %s via %s but %s via %s", port, first, node1, got, n)
			}
		}
	}
	if len(seen) != len(backends) {
		t.Errorf("64 flows reached %d of %d backends: %v", len(seen), len(backends), seen)
	}
}

func testService(id uint32, nodePort uint16, backends []netip.AddrPort) store.Service {
	s := store.Service{ID: id, Name: fmt.Sprintf("svc%d", id), VIP: netip.MustParseAddr("198.18.100.10"), Port: 80,
		Protocol: store.TCP, Type: store.NodePort, NodePort: nodePort}
	for _, b := range backends {
		s.Backends = append(s.Backends, store.Backend{IP: b.Addr(), Port: b.Port()})
	}
	return s
}
