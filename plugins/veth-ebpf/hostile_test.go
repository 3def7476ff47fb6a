package main

// Frames whose IPv4 header lies about its lengths, as a hostile pod can
// send them: from_container must drop them (counted as malformed) before
// they can reach another pod, or a plugin further down the chain.

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/braid-cni/braid/internal/bpftest"
)

// withTotLen returns a copy of frame whose IPv4 total length is n.
func withTotLen(frame []byte, n uint16) []byte {
	out := bytes.Clone(frame)
	binary.BigEndian.PutUint16(out[14+2:], n)
	return out
}

func malformedHeaderCases() []progCase {
	a, b := podA.info, podB.info
	aToB := udpFrame(a.HostMAC, a.PodMAC, podA.ip, podB.ip)
	aOut := udpFrame(a.HostMAC, a.PodMAC, podA.ip, external)
	padded := append(bytes.Clone(aToB), make([]byte, 16)...) // Ethernet padding after the packet
	return []progCase{
		{name: "IHL 15: header beyond the packet", frame: withByte(aToB, 14, 0x4f),
			verdict: verdictShot, counter: ctrDropMalformed},
		{name: "IHL 15, off-node destination", frame: withByte(aOut, 14, 0x4f),
			verdict: verdictShot, counter: ctrDropMalformed},
		{name: "total length beyond the frame", frame: withTotLen(aToB, uint16(len(aToB)-14+1)),
			verdict: verdictShot, counter: ctrDropMalformed},
		{name: "total length 1500 on a short frame", frame: withTotLen(aOut, 1500),
			verdict: verdictShot, counter: ctrDropMalformed},
		{name: "total length shorter than the header", frame: withTotLen(aToB, 19),
			verdict: verdictShot, counter: ctrDropMalformed},
		{name: "total length 0", frame: withTotLen(aToB, 0),
			verdict: verdictShot, counter: ctrDropMalformed},
		{name: "total length exactly the frame: redirected", frame: withTotLen(aToB, uint16(len(aToB)-14)),
			verdict: verdictRedirect, counter: ctrRedirectPeer, out: withMACs(aToB, b.PodMAC, b.HostMAC)},
		{name: "Ethernet padding after the packet: redirected", frame: padded,
			verdict: verdictRedirect, counter: ctrRedirectPeer, out: withMACs(padded, b.PodMAC, b.HostMAC)},
	}
}

func TestMalformedHeadersFromPod(t *testing.T) {
	objs := loadPrograms(t)
	check(t, objs, objs.FromContainer, malformedHeaderCases())
}

// FuzzHeaders: whatever a pod sends, an IPv4 frame from_container lets
// through (to another pod, or on down the chain) has a header a stack would
// take: it never hands a lie about lengths to anyone.
func FuzzHeaders(f *testing.F) {
	for _, tc := range append(malformedHeaderCases(), fromContainerCases()...) {
		f.Add(tc.frame)
	}
	objs := loadPrograms(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if !bpftest.Accepts(frame) {
			t.Skip("not a frame test_run accepts")
		}
		v, out, err := run(objs.FromContainer, frame)
		if err != nil {
			t.Fatalf("from_container: %v", err)
		}
		bpftest.RequireVerdict(t, "from_container", v, verdictShot, verdictNext, verdictRedirect)
		ipv4 := binary.BigEndian.Uint16(frame[12:]) == etherTypeIPv4
		if v != verdictShot && ipv4 && !bpftest.HeaderConsistent(out[:len(frame)]) {
			t.Errorf("from_container let an inconsistent IPv4 header through (%s):\n% x", verdictName(v), frame)
		}
	})
}
