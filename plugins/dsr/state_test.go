package main

// Lifetimes of flow state, tunnel authentication and every drop counted,
// in the programs (BPF_PROG_TEST_RUN).

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/internal/packet"
	"github.com/cilium/ebpf"
)

// flowIn is k's entry in m, if there is one.
func flowIn(t *testing.T, m *ebpf.Map, k dsrFlowKey) (dsrFlowVal, bool) {
	t.Helper()
	var v dsrFlowVal
	err := m.Lookup(k, &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return v, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return v, true
}

// requireExpiry fails unless v expires in about d.
func requireExpiry(t *testing.T, v dsrFlowVal, d time.Duration) {
	t.Helper()
	left := time.Duration(v.Expires - now())
	if left > d || left < d-2*time.Second {
		t.Errorf("entry expires in %v, want about %v", left, d)
	}
}

// A flow announced by an option is unanswered (dsr_flows_new, tcpSyn)
// until the pod sends something other than a SYN; then it is established
// (dsr_flows, tcpEstablished); FIN and RST shorten its life; an expired
// entry is not used; a new SYN on the tuple starts afresh.
func TestFlowLifetime(t *testing.T) {
	d := loadDSR(t)
	d.settings(t, dsrDsrConf{NodeIp: maps.IPv4Word(node2), DeviceMtu: 1500})
	c := netip.MustParseAddrPort("198.18.1.40:40000")
	k := flowKey(c, local, packet.ProtoTCP)
	svc := npAddr(node1, npRemote)

	d.run(t, runHere, d.objs.FromNetdev, tcpFrame(c, local, packet.SYN, svcOpt, nil), skbContext{}, verdictRedirect, ctrOptAccepted)
	v, ok := flowIn(t, d.objs.DsrFlowsNew, k)
	if !ok || v.State != 0 {
		t.Fatalf("after the SYN: new flow %+v (present %v), want state new", v, ok)
	}
	requireExpiry(t, v, defaultTCPSyn)
	if _, ok := flowIn(t, d.objs.DsrFlows, k); ok {
		t.Error("an unanswered flow is among the established")
	}
	// The pod's SYN-ACK: rewritten, still unanswered (a spoofed SYN gets that far).
	out := d.run(t, runHere, d.objs.FromContainer, tcpFrame(local, c, packet.SYN|packet.ACK, nil, nil), skbContext{}, verdictNext, ctrReplyRewrite)
	requireRewritten(t, out, svc, c)
	if _, ok := flowIn(t, d.objs.DsrFlowsNew, k); !ok {
		t.Error("the SYN-ACK moved the flow")
	}
	// Its first ACK: established.
	d.run(t, runHere, d.objs.FromContainer, tcpFrame(local, c, packet.ACK, nil, []byte("hi")), skbContext{}, verdictNext, ctrReplyRewrite, ctrEstablished)
	v, ok = flowIn(t, d.objs.DsrFlows, k)
	if !ok || v.State != 1 || v.Svc != svcAddr(svc) {
		t.Fatalf("after the pod's ACK: %+v (present %v), want established, %s", v, ok, svc)
	}
	requireExpiry(t, v, defaultTCPEstablished)
	if _, ok := flowIn(t, d.objs.DsrFlowsNew, k); ok {
		t.Error("the established flow is still among the new")
	}
	// FIN: closing.
	d.run(t, runHere, d.objs.FromContainer, tcpFrame(local, c, packet.FIN|packet.ACK, nil, nil), skbContext{}, verdictNext, ctrReplyRewrite)
	v, _ = flowIn(t, d.objs.DsrFlows, k)
	if v.State != 2 {
		t.Errorf("after a FIN: state %d, want closing", v.State)
	}
	requireExpiry(t, v, defaultTCPClose)
	// A client's RST (natively, seen on its way to the pod): reset.
	d.run(t, runHere, d.objs.FromNetdev, tcpFrame(c, local, packet.RST, nil, nil), skbContext{}, verdictNext, ctrPass)
	v, _ = flowIn(t, d.objs.DsrFlows, k)
	if v.State != 3 {
		t.Errorf("after a RST: state %d, want reset", v.State)
	}
	requireExpiry(t, v, defaultTCPReset)
	// Expired: treated as absent, the reply is not rewritten.
	v.Expires = now() - 1
	if err := d.objs.DsrFlows.Put(k, v); err != nil {
		t.Fatal(err)
	}
	out = d.run(t, runHere, d.objs.FromContainer, tcpFrame(local, c, packet.ACK, nil, nil), skbContext{}, verdictNext, ctrExpired)
	requireRewritten(t, out, local, c)
	// A new SYN on the tuple: a new flow, unanswered.
	if err := d.objs.DsrFlows.Put(k, liveFlow(svcAddr(svc))); err != nil {
		t.Fatal(err)
	}
	d.run(t, runHere, d.objs.FromNetdev, tcpFrame(c, local, packet.SYN, svcOpt, nil), skbContext{}, verdictRedirect, ctrOptAccepted)
	if _, ok := flowIn(t, d.objs.DsrFlows, k); ok {
		t.Error("a new SYN left the old established entry")
	}
	if v, ok := flowIn(t, d.objs.DsrFlowsNew, k); !ok || v.State != 0 {
		t.Errorf("a new SYN: new flow %+v (present %v)", v, ok)
	}
}

// from_overlay reads nothing without a tunnel key from a known node: a
// "reply" to this node (an SNAT port) without one is dropped, not
// translated.
func TestOverlayNeedsTunnel(t *testing.T) {
	d := loadDSR(t)
	d.settings(t, dsrDsrConf{NodeIp: maps.IPv4Word(node1), DeviceMtu: 1500, OverlayIfindex: 4242, Mode: 1})
	// A live SNAT flow on port 20000.
	k := dsrSnatRevKey{BackendIp: maps.IPv4Word(remote.Addr()), BackendPort: maps.Port16(remote.Port()), SnatPort: maps.Port16(20000), Proto: packet.ProtoUDP}
	cl := dsrSnatClient{Ip: maps.IPv4Word(client.Addr()), Port: maps.Port16(client.Port()), NodePort: maps.Port16(npRemote), State: 1, Expires: now() + uint64(time.Hour)}
	if err := d.objs.DsrSnat.Put(k, cl); err != nil {
		t.Fatal(err)
	}
	in := udpFrame(remote, npAddr(node1, 20000), nil, []byte("injected"))
	d.run(t, runHere, d.objs.FromOverlay, in, skbContext{}, verdictShot, ctrDropTunnel)
	// On the node device, from a MAC that is not node 2's: dropped too.
	d.run(t, runHere, d.objs.FromNetdev, in, skbContext{}, verdictShot, ctrDropTunnel)
}

// Drops with their own reasons: TTL 1 to forward, a missing Maglev table,
// a pod's unreadable options, options on other protocols, a first
// fragment to a node port; later fragments are counted and passed.
func TestDropReasons(t *testing.T) {
	d := loadDSR(t)
	svc := npAddr(node1, npRemote)
	t.Run("TTL 1", func(t *testing.T) {
		h := packet.IPv4{Src: client.Addr(), Dst: node1, Proto: packet.ProtoTCP, TTL: 1, Frag: 0x4000}
		in := ipFrame(h, packet.TCP(client.Addr(), node1, client.Port(), npRemote, packet.SYN, 1, 0, nil))
		d.run(t, runHere, d.objs.FromNetdev, in, skbContext{}, verdictShot, ctrDropTTL)
	})
	t.Run("no Maglev table", func(t *testing.T) {
		k := dsrNodeportKey{Port: maps.Port16(30095), Proto: packet.ProtoTCP}
		if err := d.objs.DsrNodeports.Put(k, dsrNodeportSvc{Id: 99, Count: 1, TableSize: testTableSize}); err != nil {
			t.Fatal(err)
		}
		d.run(t, runHere, d.objs.FromNetdev, tcpFrame(client, npAddr(node1, 30095), packet.SYN, nil, nil), skbContext{}, verdictShot, ctrDropNoTable)
	})
	t.Run("a pod's options cut short", func(t *testing.T) {
		in := tcpFrame(local, client, packet.SYN, []byte{1, 1, 1, 0}, nil)
		d.runRaw(t, runHere, d.objs.FromContainer, in[:14+20], skbContext{}, verdictShot, ctrDropParse)
	})
	t.Run("a pod's option on ICMP", func(t *testing.T) {
		h := packet.IPv4{Src: local.Addr(), Dst: client.Addr(), Proto: 1, Options: svcOpt}
		d.run(t, runHere, d.objs.FromContainer, ipFrame(h, []byte{8, 0, 0xf7, 0xff, 0, 0, 0, 0}), skbContext{}, verdictShot, ctrDropForgedOpt)
	})
	t.Run("fragments", func(t *testing.T) {
		first := packet.IPv4{Src: client.Addr(), Dst: node1, Proto: packet.ProtoUDP, Frag: 0x2000}
		udp := packet.UDP(client.Addr(), node1, client.Port(), npRemote, make([]byte, 64))
		d.run(t, runHere, d.objs.FromNetdev, ipFrame(first, udp), skbContext{}, verdictShot, ctrDropFragNodeport)
		later := packet.IPv4{Src: client.Addr(), Dst: node1, Proto: packet.ProtoUDP, Frag: 9}
		d.run(t, runHere, d.objs.FromNetdev, ipFrame(later, make([]byte, 64)), skbContext{}, verdictNext, ctrFragPassed)
		other := packet.UDP(client.Addr(), node1, client.Port(), 53, make([]byte, 64))
		d.run(t, runHere, d.objs.FromNetdev, ipFrame(first, other), skbContext{}, verdictNext, ctrFragPassed)
	})
	_ = svc
}

// An External service's VIP:port is balanced like a node port: the option
// carries the VIP, and the backend's node trusts an option naming it (and
// no other address that is not a node).
func TestExternalVIP(t *testing.T) {
	d := loadDSR(t)
	vip := netip.MustParseAddrPort("198.18.100.20:80")
	k := dsrExternalKey{Ip: maps.IPv4Word(vip.Addr()), Port: maps.Port16(vip.Port()), Proto: packet.ProtoTCP}
	if err := d.objs.DsrExternals.Put(k, dsrNodeportSvc{Id: 1, Count: 1, TableSize: testTableSize}); err != nil {
		t.Fatal(err)
	}
	d.settings(t, dsrDsrConf{NodeIp: maps.IPv4Word(node1), DeviceMtu: 1500, OverlayIfindex: 4242})
	in := tcpFrame(client, vip, packet.SYN, nil, nil)
	out := d.run(t, runHere, d.objs.FromNetdev, in, skbContext{}, verdictRedirect, ctrDSRForward, ctrDSROptAdded)
	vipOpt := dsrOption(vip.Addr(), vip.Port())
	requireOption(t, out, packet.MustParse(in), vipOpt)
	requireRewritten(t, out, client, remote)

	d.settings(t, dsrDsrConf{NodeIp: maps.IPv4Word(node2), DeviceMtu: 1500})
	d.run(t, runHere, d.objs.FromNetdev, tcpFrame(client, local, packet.SYN, vipOpt, nil), skbContext{}, verdictRedirect, ctrOptAccepted)
	if got, ok := d.flow(t, flowKey(client, local, packet.ProtoTCP)); !ok || got != svcAddr(vip) {
		t.Errorf("flow %+v (present %v), want %s", got, ok, vip)
	}
	other := dsrOption(netip.MustParseAddr("198.18.100.99"), 80)
	c := netip.MustParseAddrPort("198.18.1.50:40000")
	d.run(t, runHere, d.objs.FromNetdev, tcpFrame(c, local, packet.SYN, other, nil), skbContext{}, verdictNext, ctrDropForgedOpt, ctrPass)
}
