package hostile

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
)

// vlanFrames is how many tagged frames TestVLANFromPod sends per victim.
const vlanFrames = 5

// tagged is an honest UDP frame from p to dst (p's own addresses) with an
// 802.1Q tag for VLAN vid in the frame, as a pod's raw packet socket
// writes it; the marker payload finds it wherever it goes.
func tagged(p *harness.Pod, dst netip.AddrPort, vid uint16, marker []byte) []byte {
	f := frameTo(p, dst, marker)
	tag := make([]byte, 4)
	binary.BigEndian.PutUint16(tag, 0x8100)
	binary.BigEndian.PutUint16(tag[2:], vid)
	return append(append(bytes.Clone(f[:12]), tag...), f[12:]...)
}

// TestVLANFromPod: a pod writes 802.1Q frames (VLAN 7, its own addresses)
// to a pod on its node and to one on the other node, in native routing and
// in VXLAN. The host side of its veth moves the tag into skb metadata
// before tc runs, so from_container sees plain IPv4 from the pod; it must
// drop every frame that carries a tag (drop_vlan) rather than deliver it
// or send it out of the node device still tagged, onto whatever VLAN the
// underlay trunks. Nothing carrying the frames' payload appears on the
// underlay (the sending node's port) or at either victim's interface, the
// victims' sockets receive nothing, and drop_vlan rises by exactly the
// frames sent. An untagged frame after them arrives.
func TestVLANFromPod(t *testing.T) {
	for _, conflist := range []string{"native.conflist", "vxlan.conflist"} {
		t.Run(conflist, func(t *testing.T) {
			cl := twoNodes(t, conflist)
			attacker, near, far := cl.c1.AddPod(t, "attacker"), cl.c1.AddPod(t, "near"), cl.c2.AddPod(t, "far")
			var sent, dropped uint64
			for _, victim := range []*harness.Pod{near, far} {
				rx, dst := listen(t, victim)
				marker := []byte("vlan-hop-" + victim.Name)
				frames := make([][]byte, vlanFrames)
				for i := range frames {
					frames[i] = tagged(attacker, dst, 7, marker)
				}
				underlay := cl.topo.Underlay.Sniff(t, cl.n1.UnderlayPort())
				atVictim := victim.Sniff(t, victim.IfName)
				before := cl.n1.CounterSet(t, "veth-ebpf")
				if err := attacker.SendRaw(frames...); err != nil {
					t.Fatal(err)
				}
				sent += uint64(len(frames))
				d := waitCounter(t, cl.n1, "veth-ebpf", before, "drop_vlan", vlanFrames)
				dropped += d
				if d != vlanFrames {
					t.Errorf("%s: drop_vlan rose by %d, want %d (%s)", victim.Name, d, vlanFrames,
						harness.FormatDeltas(cl.n1.CounterSet(t, "veth-ebpf").Since(before)))
				}
				requireSilent(t, rx, 200*time.Millisecond, victim.Name)
				for where, s := range map[string]*harness.Sniffer{"the underlay": underlay, victim.Name: atVictim} {
					got := s.Stop()
					if s.Dropped > 0 {
						t.Errorf("%s: the sniffer lost %d frames", where, s.Dropped)
					}
					for _, f := range got {
						if bytes.Contains(f, marker) {
							t.Errorf("a tagged frame's payload reached %s: %s", where, describe(f))
						}
					}
				}
				if err := attacker.SendRaw(frameTo(attacker, dst, []byte("untagged"))); err != nil {
					t.Fatal(err)
				}
				if got, err := harness.ReadUDP(rx, 2*time.Second); err != nil || string(got) != "untagged" {
					t.Errorf("%s: the untagged frame after them: %q, %v", victim.Name, got, err)
				}
			}
			t.Logf("FIGURE VLAN from a pod (%s): %d 802.1Q frames (VLAN 7) sent to 2 victims (same node, other node): drop_vlan rose by %d; failed checks (a frame on the underlay or at a victim): %v",
				conflist, sent, dropped, t.Failed())
			cl.endClean(t, attacker, near, far)
		})
	}
}
