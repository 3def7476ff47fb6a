package main

import (
	"bytes"
	"testing"

	"github.com/braid-cni/braid/internal/bpftest"
	"github.com/braid-cni/braid/internal/packet"
	"github.com/cilium/ebpf"
)

// FuzzPrograms feeds arbitrary and truncated frames to the three programs
// with BPF_PROG_TEST_RUN: each must run without error, return one of its
// verdicts, leave the frame as it was but for the TTL of one from_container
// redirects (routed: one less, checksum fixed; encapsulation is the
// device's), and count what it did: from_container
// and from_overlay exactly one counter, to_overlay at most one (a packet it
// keys goes on uncounted). from_overlay gets no tunnel metadata under
// test_run; its checks on metadata run on a real device in
// TestFromOverlayOnDevice and in integration/hostile's random VXLAN frames.
func FuzzPrograms(f *testing.F) {
	for _, fr := range [][]byte{
		podFrame(localPod, remotePod2, 100, true),
		podFrame(localPod, remotePod3, 1400, false),
		podFrame(localPod, external, 28, true),
		podFrame(thisNode, remotePod2, 64, true),
		podFrame(remotePod2, localPod, 64, true),
		arpFrame(),
		packet.Ethernet(hostMAC, podMAC, packet.EtherTypeIPv6, make([]byte, 40)),
		podFrame(localPod, remotePod2, 100, true)[:14+20],
		podFrame(localPod, remotePod2, 100, true)[:14],
	} {
		f.Add(fr)
	}
	objs := loadDP(f, 1, 42)
	progs := []struct {
		name    string
		prog    *ebpf.Program
		verdict []uint32
		counts  func(moved uint64) bool
	}{
		{"from_container", objs.FromContainer, []uint32{bpftest.Next, bpftest.Redirect, bpftest.Shot},
			func(m uint64) bool { return m == 1 }},
		{"to_overlay", objs.ToOverlay, []uint32{bpftest.Next, bpftest.Shot},
			func(m uint64) bool { return m <= 1 }},
		{"from_overlay", objs.FromOverlay, []uint32{bpftest.Next, bpftest.Redirect, bpftest.Shot},
			func(m uint64) bool { return m == 1 }},
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if !bpftest.Accepts(frame) {
			t.Skip("not a frame test_run accepts")
		}
		for _, p := range progs {
			before := bpftest.Counters(t, objs.Counters)
			v, out, err := bpftest.Run(p.prog, frame, bpftest.SkbContext{Ifindex: 1})
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			bpftest.RequireVerdict(t, p.name, v, p.verdict...)
			want := frame
			if p.prog == objs.FromContainer && v == bpftest.Redirect {
				want = routed(frame)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("%s changed the frame (%s)", p.name, bpftest.VerdictName(v))
			}
			if m := bpftest.Moved(before, bpftest.Counters(t, objs.Counters)); !p.counts(m) {
				t.Errorf("%s moved the counters by %d in all", p.name, m)
			}
		}
	})
}
