package hostile

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/packet"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
)

// TestAntiSpoofingRunsFirst: the routing plugins' programs on a pod's veth
// redirect packets (native-route to the node device, vxlan-tunnel into the
// overlay), so veth-ebpf's source checks must run before them, whatever
// order repairs re-attach things in. In native routing and in VXLAN:
//
//   - veth-ebpf's link pin for a pod is removed (an operator's mistake: its
//     program is detached) and `braid sync` repairs it, running veth-ebpf's
//     reconcile while the routing plugin's program is still attached; a
//     frame with a forged source to a pod on the other node is dropped and
//     counted (drop_spoof_ip), the honest one after it arrives first, and
//     CHECK passes;
//   - another program is attached at the head of the hook: CHECK fails and
//     `braid status` reports the order; `braid sync` puts anti-spoofing
//     first again, CHECK passes, and a forged frame is dropped again.
func TestAntiSpoofingRunsFirst(t *testing.T) {
	for _, conflist := range []string{"native.conflist", "vxlan.conflist"} {
		t.Run(conflist, func(t *testing.T) {
			cl := twoNodes(t, conflist)
			attacker, far := cl.c1.AddPod(t, "attacker"), cl.c2.AddPod(t, "far")
			hostIf, _ := attacker.HostIf()
			rx, dst := listen(t, far)
			forged := 0
			spoof := func(t *testing.T) {
				t.Helper()
				before := cl.n1.CounterSet(t, "veth-ebpf")
				if err := attacker.SendRaw(spoofedTo(attacker, dst, []byte("forged")), frameTo(attacker, dst, []byte("honest"))); err != nil {
					t.Fatal(err)
				}
				forged++
				if got, err := harness.ReadUDP(rx, 2*time.Second); err != nil || string(got) != "honest" {
					t.Errorf("the victim's first datagram: %q, %v; want the honest one (the forged one was redirected before the source check?)", got, err)
				}
				if d := waitCounter(t, cl.n1, "veth-ebpf", before, "drop_spoof_ip", 1); d != 1 {
					t.Errorf("drop_spoof_ip rose by %d, want 1 (%s)", d, harness.FormatDeltas(cl.n1.CounterSet(t, "veth-ebpf").Since(before)))
				}
			}

			t.Run("link pin removed, braid sync", func(t *testing.T) {
				cl.n1.RemovePin(t, "veth-ebpf", "links", hostIf+"_ingress")
				cl.c1.RequireSync(t)
				if err := attacker.Check(); err != nil {
					t.Errorf("CHECK after the repair: %v", err)
				}
				spoof(t)
			})
			t.Run("another program at the head", func(t *testing.T) {
				interloper := attachAtHead(t, cl.n1, hostIf)
				defer interloper.Close()
				if err := attacker.Check(); err == nil || !strings.Contains(err.Error(), "must run first") {
					t.Errorf("CHECK with another program first: %v, want it to name the order", err)
				}
				if p := cl.n1.BraidStatus(t).Problems; !slices.ContainsFunc(p, func(s string) bool {
					return strings.Contains(s, "anti-spoofing does not run first on "+hostIf)
				}) {
					t.Errorf("braid status problems %q do not report the order", p)
				}
				cl.c1.RequireSync(t)
				if err := attacker.Check(); err != nil {
					t.Errorf("CHECK after braid sync: %v", err)
				}
				if p := cl.n1.BraidStatus(t).Problems; len(p) > 0 {
					t.Errorf("braid status after braid sync: %q", p)
				}
				spoof(t)
			})
			t.Logf("FIGURE anti-spoofing order (%s): %d forged frames sent after repairs, every one dropped and counted: %v",
				conflist, forged, !t.Failed())
			cl.endClean(t, attacker, far)
		})
	}
}

// spoofedTo is frameTo with a source address in the pod's node's CIDR that
// no pod holds.
func spoofedTo(p *harness.Pod, dst netip.AddrPort, payload []byte) []byte {
	_, gw := p.HostIf()
	src := netip.MustParseAddr("198.19.1.250")
	return packet.Ethernet(packet.MAC(gw), packet.MAC(p.MAC()), packet.EtherTypeIPv4,
		packet.IPv4Packet(src, dst.Addr(), packet.ProtoUDP, packet.UDP(src, dst.Addr(), 40000, dst.Port(), payload)))
}

// attachAtHead attaches a program that only passes packets on (TCX_NEXT)
// at the head of hostIf's tcx ingress on n, as another tool might; closing
// the link detaches it.
func attachAtHead(t *testing.T, n *harness.Node, hostIf string) link.Link {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "interloper", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	var l link.Link
	err = n.Do(func() error {
		veth, err := netlink.LinkByName(hostIf)
		if err != nil {
			return err
		}
		l, err = link.AttachTCX(link.TCXOptions{Interface: veth.Attrs().Index, Program: prog,
			Attach: ebpf.AttachTCXIngress, Anchor: link.Head()})
		return err
	})
	if err != nil {
		t.Fatalf("attach at the head of %s: %v", hostIf, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
