package vethebpf

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
)

func TestSameNodeTraffic(t *testing.T) {
	n, c := setup(t)
	a, b := c.AddPod(t, "a"), c.AddPod(t, "b")

	t.Run("pod to pod", func(t *testing.T) {
		before := n.Counters(t, plugin)
		for _, p := range [][2]*harness.Pod{{a, b}, {b, a}} {
			if err := p[0].Ping(p[1].IP); err != nil {
				t.Errorf("ping %s -> %s: %v", p[0].Name, p[1].Name, err)
			}
		}
		// The server sees the pod's own address: nothing is NATed.
		if got := a.RequireTCP(t, b.NS, b.IP); got.Addr() != a.IP {
			t.Errorf("b saw TCP from %s, want %s", got, a.IP)
		}
		if got := b.RequireUDP(t, a.NS, a.IP); got.Addr() != b.IP {
			t.Errorf("a saw UDP from %s, want %s", got, b.IP)
		}
		// Two echo requests and two replies at least went pod to pod
		// with bpf_redirect_peer rather than through the node's stack.
		if d := n.Counters(t, plugin)[cntRedirectPeer] - before[cntRedirectPeer]; d < 4 {
			t.Errorf("redirect_peer counter grew by %d, want at least 4", d)
		}
	})
	t.Run("pod to node", func(t *testing.T) {
		if err := a.Ping(n.IP); err != nil {
			t.Error(err)
		}
		if got := a.RequireTCP(t, n.NS, n.IP); got.Addr() != a.IP {
			t.Errorf("node saw TCP from %s, want %s", got, a.IP)
		}
	})
	t.Run("node to pod", func(t *testing.T) {
		if err := n.Ping(b.IP); err != nil {
			t.Error(err)
		}
		n.RequireTCP(t, b.NS, b.IP)
		n.RequireUDP(t, b.NS, b.IP)
	})
}

// TestAntiSpoofing sends forged frames from a pod's raw socket. Each forged
// frame is followed by a genuine one on the same path, so the first datagram
// the target receives tells at once whether the forged one got through.
func TestAntiSpoofing(t *testing.T) {
	n, c := setup(t)
	attacker, target, victim := c.AddPod(t, "a"), c.AddPod(t, "t"), c.AddPod(t, "v")

	for _, tc := range []struct {
		name    string
		forge   func(*harness.Frame)
		counter int
	}{
		{"source IP nobody holds", func(f *harness.Frame) {
			f.Src = netip.AddrPortFrom(netip.MustParseAddr("198.19.1.250"), f.Src.Port())
		}, cntDropSpoofIP},
		{"source IP of another pod", func(f *harness.Frame) {
			f.Src = netip.AddrPortFrom(victim.IP, f.Src.Port())
		}, cntDropSpoofIP},
		{"source MAC", func(f *harness.Frame) {
			f.SrcMAC = net.HardwareAddr{0x02, 0xbd, 0, 0, 0, 1}
		}, cntDropSpoofMAC},
		{"source IP and MAC of another pod", func(f *harness.Frame) {
			f.Src = netip.AddrPortFrom(victim.IP, f.Src.Port())
			f.SrcMAC = victim.MAC()
		}, cntDropSpoofIP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rx := target.ListenUDP(t, ":0")
			dst := netip.AddrPortFrom(target.IP, uint16(rx.LocalAddr().(*net.UDPAddr).Port))
			before := n.Counters(t, plugin)

			forged := attacker.Frame(dst, []byte("forged"))
			tc.forge(&forged)
			genuine := attacker.Frame(dst, []byte("genuine"))
			for _, f := range []harness.Frame{forged, genuine} {
				if err := attacker.SendFrame(f); err != nil {
					t.Fatal(err)
				}
			}
			got, err := harness.ReadUDP(rx, 2*time.Second)
			if err != nil {
				t.Fatalf("the genuine frame did not arrive: %v", err)
			}
			if string(got) != "genuine" {
				t.Fatalf("target received %q first: the forged frame was delivered", got)
			}
			if d := n.Counters(t, plugin)[tc.counter] - before[tc.counter]; d != 1 {
				t.Errorf("drop counter %d grew by %d, want 1", tc.counter, d)
			}
		})
	}
}

// TestSpoofedFrameToNode checks that anti-spoofing also guards traffic that
// leaves through the node's stack, not only pod-to-pod redirects: each
// forged frame is dropped and counted (drop_spoof_ip), the genuine one
// after it arrives.
func TestSpoofedFrameToNode(t *testing.T) {
	const forgedFrames = 5
	n, c := setup(t)
	a := c.AddPod(t, "a")
	rx := n.ListenUDP(t, ":0")
	dst := netip.AddrPortFrom(n.IP, uint16(rx.LocalAddr().(*net.UDPAddr).Port))
	forged := a.Frame(dst, []byte("forged"))
	forged.Src = netip.AddrPortFrom(netip.MustParseAddr("198.19.1.251"), 40000)
	before := n.Counters(t, plugin)
	for i, f := range append(slices.Repeat([]harness.Frame{forged}, forgedFrames), a.Frame(dst, []byte("genuine"))) {
		if err := a.SendFrame(f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	got, err := harness.ReadUDP(rx, 2*time.Second)
	if err != nil || string(got) != "genuine" {
		t.Fatalf("node received %q (%v), want %q first", got, err, "genuine")
	}
	// The frames may have been handled on either CPU, in any order: give
	// the forged ones' verdicts a moment.
	var d uint64
	for end := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if d = n.Counters(t, plugin)[cntDropSpoofIP] - before[cntDropSpoofIP]; d >= forgedFrames || time.Now().After(end) {
			break
		}
	}
	if d != forgedFrames {
		t.Errorf("drop_spoof_ip rose by %d, want %d (the forged frames sent)", d, forgedFrames)
	}
}
