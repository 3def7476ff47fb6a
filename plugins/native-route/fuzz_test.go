package main

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/braid-cni/braid/internal/bpftest"
	"github.com/braid-cni/braid/internal/packet"
)

// FuzzPrograms feeds arbitrary and truncated frames to both programs in the
// test node (newTestNode, peer resolved): each must run without error,
// return one of its verdicts and count exactly once. A frame passed on is
// untouched; a frame redirected is the one received, forwarded: TTL one
// less, header checksum still what it was worth, and (from_container) the
// next hop's MACs or the original ones (redirect_neigh resolves them), or
// (from_netdev) the local pod's; and its IPv4 header's lengths add up: a
// redirect skips the checks of the stack. from_netdev drops exactly the
// frames of EtherType IPv4 whose header does not add up, and counts them
// as drop_netdev_malformed.
func FuzzPrograms(f *testing.F) {
	for _, fr := range [][]byte{
		fromPod(remotePod, 64, 100),
		fromPod(remotePod, 2, deviceMTU),
		fromPod(thisNode, 64, 28),
		fromPod(unrouted, 64, 28),
		frame(devMAC, peerMAC, remotePod, localPod, 64, 100),
		frame(devMAC, peerMAC, remotePod, noPod, 1, 100),
		arp(),
		packet.Ethernet(hostMAC, podMAC, packet.EtherTypeIPv6, make([]byte, 40)),
		fromPod(remotePod, 64, 100)[:14+20],
	} {
		f.Add(fr)
	}
	n := newTestNode(f)
	n.resolvePeer(f)
	fromHost := bpftest.SkbContext{Ifindex: uint32(n.hostVeth), IngressIfindex: uint32(n.hostVeth)}
	fromDev := bpftest.SkbContext{Ifindex: uint32(n.dev), IngressIfindex: uint32(n.dev)}
	f.Fuzz(func(t *testing.T, in []byte) {
		if !bpftest.Accepts(in) {
			t.Skip("not a frame test_run accepts")
		}
		for _, p := range []struct {
			name string
			run  func() (uint32, []byte, error)
			macs [][2]packet.MAC // dst, src of a redirected frame
		}{
			{"from_container", func() (uint32, []byte, error) { return n.ns.Run(n.objs.FromContainer, in, fromHost) },
				[][2]packet.MAC{{peerMAC, devMAC}, {packet.MAC(in[0:6]), packet.MAC(in[6:12])}}},
			{"from_netdev", func() (uint32, []byte, error) { return n.ns.Run(n.objs.FromNetdev, in, fromDev) },
				[][2]packet.MAC{{podMAC, hostMAC}}},
		} {
			before := bpftest.Counters(t, n.objs.Counters)
			v, out, err := p.run()
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			bpftest.RequireVerdict(t, p.name, v, bpftest.Next, bpftest.Redirect, bpftest.Shot)
			after := bpftest.Counters(t, n.objs.Counters)
			if m := bpftest.Moved(before, after); m != 1 {
				t.Errorf("%s moved the counters by %d in all, want 1", p.name, m)
			}
			if p.name == "from_netdev" {
				lies := binary.BigEndian.Uint16(in[12:]) == packet.EtherTypeIPv4 && !bpftest.HeaderConsistent(in)
				dropped := after[cntDropNetdevMalformed] - before[cntDropNetdevMalformed]
				if lies != (v == bpftest.Shot) || lies != (dropped == 1) {
					t.Errorf("from_netdev: %s, drop_netdev_malformed +%d, for a frame whose IPv4 header lies: %v\n% x",
						bpftest.VerdictName(v), dropped, lies, in)
				}
			}
			if v != bpftest.Redirect {
				if !bytes.Equal(out, in) {
					t.Errorf("%s changed a frame it did not redirect (%s)", p.name, bpftest.VerdictName(v))
				}
				continue
			}
			requireForwarded(t, p.name, in, out, p.macs)
			if !bpftest.HeaderConsistent(out) {
				t.Errorf("%s redirected an IPv4 header that lies about its lengths:\n% x", p.name, in)
			}
		}
	})
}

// requireForwarded checks that out is in as a router forwards it.
func requireForwarded(t *testing.T, prog string, in, out []byte, macs [][2]packet.MAC) {
	t.Helper()
	if len(out) != len(in) || len(in) < 14+20 {
		t.Fatalf("%s redirected a %d-byte frame as %d bytes", prog, len(in), len(out))
	}
	okMACs := false
	for _, m := range macs {
		okMACs = okMACs || (packet.MAC(out[0:6]) == m[0] && packet.MAC(out[6:12]) == m[1])
	}
	if !okMACs {
		t.Errorf("%s: MACs % x > % x", prog, out[6:12], out[0:6])
	}
	const ttl = 14 + 8
	if out[ttl] != in[ttl]-1 {
		t.Errorf("%s: TTL %d in, %d out", prog, in[ttl], out[ttl])
	}
	ihl := int(in[14]&0x0f) * 4
	if 14+ihl <= len(in) {
		inOK := packet.Checksum(in[14:14+ihl]) == 0
		outOK := packet.Checksum(out[14:14+ihl]) == 0
		if inOK != outOK {
			t.Errorf("%s: header checksum verified %v in, %v out", prog, inOK, outOK)
		}
	}
	rest := func(b []byte) []byte { return append(bytes.Clone(b[12:ttl]), b[ttl+1:14+10]...) }
	if !bytes.Equal(rest(in), rest(out)) || !bytes.Equal(in[14+12:], out[14+12:]) {
		t.Errorf("%s changed more than MACs, TTL and checksum:\n% x\n% x", prog, in, out)
	}
}
