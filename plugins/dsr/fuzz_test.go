package main

import (
	"encoding/binary"
	"testing"

	"github.com/braid-cni/braid/internal/bpftest"
	"github.com/braid-cni/braid/internal/packet"
	"github.com/cilium/ebpf"
)

// FuzzPrograms feeds arbitrary and truncated frames to the three programs
// (the entry node's settings, in the test router's netns, so that the fib
// answers): each must run without error and return one of its verdicts,
// and a frame it redirects (past the stack's checks) has an IPv4 header
// whose lengths add up.
// And whatever a pod sends, from_container never lets through a packet that
// another node's accept_opt would honour: an IHL-7 TCP or UDP packet whose
// first option is a DSR option (see also TestForgedOptionFromPod here and
// in integration/dsr).
func FuzzPrograms(f *testing.F) {
	for _, fr := range [][]byte{
		tcpFrame(client, npAddr(node1, npRemote), packet.SYN, nil, nil),
		udpFrame(client, npAddr(node1, npRemote), nil, []byte("q")),
		tcpFrame(client, npAddr(node1, npLocal), packet.SYN, nil, nil),
		tcpFrame(client, npAddr(node1, npEmpty), packet.SYN, nil, nil),
		tcpFrame(client, local, packet.SYN, svcOpt, nil),
		tcpFrame(local, client, packet.SYN|packet.ACK, nil, nil),
		tcpFrame(local, remote, packet.SYN, svcOpt, nil),
		udpFrame(local, remote, svcOpt, []byte("forged")),
		tcpFrame(client, npAddr(node1, npRemote), packet.SYN, nil, nil)[:14+20],
	} {
		f.Add(fr)
	}
	d := loadDSR(f)
	rt := newRouter(f)
	ctx := skbContext{Ifindex: rt.in, IngressIfindex: rt.in}
	progs := []struct {
		name string
		prog *ebpf.Program
	}{{"from_netdev", d.objs.FromNetdev}, {"from_overlay", d.objs.FromOverlay}, {"from_container", d.objs.FromContainer}}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if !bpftest.Accepts(frame) {
			t.Skip("not a frame test_run accepts")
		}
		for _, p := range progs {
			v, out, err := rt.run(p.prog, frame, ctx)
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			bpftest.RequireVerdict(t, p.name, v, bpftest.Next, bpftest.Redirect, bpftest.Shot)
			if v == bpftest.Redirect && !bpftest.HeaderConsistent(out) {
				t.Errorf("%s redirected an IPv4 header that lies about its lengths:\n% x", p.name, frame)
			}
			if p.name == "from_container" && v != bpftest.Shot && optionCarrier(frame) {
				t.Errorf("from_container let a pod's DSR option through (%s):\n% x", bpftest.VerdictName(v), frame)
			}
		}
	})
}

// optionCarrier mirrors what parse() and accept_opt() in bpf/dsr.c take
// for a packet announcing a DSR flow: IPv4 with lengths that add up, IHL 7,
// TCP or UDP, not a fragment, its ports (and TCP flags) present, first
// option 0x9a of length 8.
func optionCarrier(b []byte) bool {
	if len(b) < 14+28 || binary.BigEndian.Uint16(b[12:]) != packet.EtherTypeIPv4 || b[14] != 0x47 ||
		!bpftest.HeaderConsistent(b) {
		return false
	}
	proto, frag := b[14+9], binary.BigEndian.Uint16(b[14+6:])&0x3fff
	l4 := 14 + 28
	switch {
	case frag != 0:
		return false
	case proto == packet.ProtoUDP && len(b) >= l4+4:
	case proto == packet.ProtoTCP && len(b) >= l4+14:
	default:
		return false
	}
	return b[14+20] == 0x9a && b[14+21] == 8
}
