package hostile

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/packet"
)

// lie is a way for an IPv4 header to lie about the packet.
type lie struct {
	name  string
	apply func(frame []byte) []byte
}

func setTotLen(n func(frame []byte) int) func([]byte) []byte {
	return func(f []byte) []byte {
		f = bytes.Clone(f)
		binary.BigEndian.PutUint16(f[14+2:], uint16(n(f)))
		return fixIPChecksum(f)
	}
}

// fixIPChecksum recomputes the checksum of the 20-byte IPv4 header, so
// that nothing but the lie is wrong.
func fixIPChecksum(f []byte) []byte {
	f[14+10], f[14+11] = 0, 0
	binary.BigEndian.PutUint16(f[14+10:], packet.Checksum(f[14:14+20]))
	return f
}

var lies = []lie{
	{"IHL 15: options beyond the packet", func(f []byte) []byte {
		f = bytes.Clone(f)
		f[14] = 0x4f
		return fixIPChecksum(f)
	}},
	{"IHL 8, total length 28", func(f []byte) []byte {
		f = bytes.Clone(f)
		f[14] = 0x48
		binary.BigEndian.PutUint16(f[14+2:], 28)
		return fixIPChecksum(f)
	}},
	{"total length one byte beyond the frame", setTotLen(func(f []byte) int { return len(f) - 14 + 1 })},
	{"total length 1400 on a short frame", setTotLen(func([]byte) int { return 1400 })},
	{"total length 65535", setTotLen(func([]byte) int { return 65535 })},
	{"total length shorter than the header", setTotLen(func([]byte) int { return 12 })},
	{"total length 0", setTotLen(func([]byte) int { return 0 })},
	{"truncated: 10 bytes of IPv4", func(f []byte) []byte { return bytes.Clone(f[:14+10]) }},
	{"truncated: Ethernet header only", func(f []byte) []byte { return bytes.Clone(f[:14]) }},
	{"version 6 in an IPv4 frame", func(f []byte) []byte {
		f = bytes.Clone(f)
		f[14] = 0x65
		return f
	}},
	{"IHL 3", func(f []byte) []byte {
		f = bytes.Clone(f)
		f[14] = 0x43
		return f
	}},
}

// TestLyingHeaders: a pod sends IPv4 headers that lie about their lengths
// (or are cut short) to a pod on its node and to one on the other node.
// Its veth drops each (drop_malformed), and neither victim's stack sees a
// single IPv4 packet meanwhile (its InReceives does not move); an honest
// frame sent after each lie arrives.
func TestLyingHeaders(t *testing.T) {
	cl := twoNodes(t, "vxlan.conflist")
	attacker, near, far := cl.c1.AddPod(t, "attacker"), cl.c1.AddPod(t, "near"), cl.c2.AddPod(t, "far")
	lied := 0
	for _, victim := range []*harness.Pod{near, far} {
		rx, dst := listen(t, victim)
		honest := frameTo(attacker, dst, []byte("honest"))
		for _, l := range lies {
			t.Run(victim.Name+"/"+l.name, func(t *testing.T) {
				before, stack := cl.n1.CounterSet(t, "veth-ebpf"), ipStats(t, victim.NS)
				if err := attacker.SendRaw(l.apply(honest)); err != nil {
					t.Fatal(err)
				}
				if d := waitCounter(t, cl.n1, "veth-ebpf", before, "drop_malformed", 1); d != 1 {
					t.Errorf("drop_malformed rose by %d, want 1 (%s)", d,
						harness.FormatDeltas(cl.n1.CounterSet(t, "veth-ebpf").Since(before)))
				}
				time.Sleep(100 * time.Millisecond)
				if got := ipStats(t, victim.NS); got["InReceives"] != stack["InReceives"] {
					t.Errorf("the victim's stack received %d packets (header errors: %d)",
						got["InReceives"]-stack["InReceives"], got["InHdrErrors"]-stack["InHdrErrors"])
				}
				if err := attacker.SendRaw(honest); err != nil {
					t.Fatal(err)
				}
				if got, err := harness.ReadUDP(rx, 2*time.Second); err != nil || string(got) != "honest" {
					t.Errorf("the honest frame after it: %q, %v", got, err)
				}
				lied++
			})
		}
	}
	t.Logf("FIGURE lying headers: %d kinds x 2 victims (same node, other node): %d frames dropped and counted, none reached a victim's stack",
		len(lies), lied)
	cl.endClean(t, attacker, near, far)
}

// TestLyingHeadersFromUnderlay: in native routing, a host on the underlay
// sends the same lies to a pod, at the node's MAC: the node's device
// program delivers straight into pods, bypassing the checks the node's
// stack would have made, so it makes them itself: each lie is dropped and
// counted (drop_netdev_malformed), and the victim's stack sees nothing.
func TestLyingHeadersFromUnderlay(t *testing.T) {
	cl := twoNodes(t, "native.conflist")
	// The kernel's bridge validates IPv4 headers for netfilter (on by
	// default); a real underlay's switches do not.
	if err := cl.topo.Underlay.Sysctl("net/bridge/bridge-nf-call-iptables", "0"); err != nil {
		t.Fatal(err)
	}
	victim := cl.c1.AddPod(t, "victim")
	host := harnessHost(t, cl)
	rx, dst := listen(t, victim)
	nodeMAC := packet.MAC(cl.n1.LinkMAC(t, harness.NodeDevice))
	hostMAC := packet.MAC(host.LinkMAC(t, harness.NodeDevice))
	src := host.IP
	honest := packet.Ethernet(nodeMAC, hostMAC, packet.EtherTypeIPv4,
		packet.IPv4Packet(src, dst.Addr(), packet.ProtoUDP, packet.UDP(src, dst.Addr(), 40000, dst.Port(), []byte("honest"))))
	dropped := 0
	for _, l := range lies {
		t.Run(l.name, func(t *testing.T) {
			before, stack := cl.n1.CounterSet(t, "native-route"), ipStats(t, victim.NS)
			if err := host.SendRaw(harness.NodeDevice, l.apply(honest)); err != nil {
				t.Fatal(err)
			}
			if d := waitCounter(t, cl.n1, "native-route", before, "drop_netdev_malformed", 1); d != 1 {
				t.Errorf("drop_netdev_malformed rose by %d, want 1 (%s)", d,
					harness.FormatDeltas(cl.n1.CounterSet(t, "native-route").Since(before)))
			} else {
				dropped++
			}
			time.Sleep(100 * time.Millisecond)
			if got := ipStats(t, victim.NS); got["InReceives"] != stack["InReceives"] {
				t.Errorf("the victim's stack received %d packets (header errors: %d)",
					got["InReceives"]-stack["InReceives"], got["InHdrErrors"]-stack["InHdrErrors"])
			}
			if err := host.SendRaw(harness.NodeDevice, honest); err != nil {
				t.Fatal(err)
			}
			if got, err := harness.ReadUDP(rx, 2*time.Second); err != nil || string(got) != "honest" {
				t.Errorf("the honest frame after it: %q, %v", got, err)
			}
		})
	}
	t.Logf("FIGURE lying headers from the underlay: %d kinds sent to a pod at the node's MAC: %d dropped and counted by from_netdev, none reached the pod's stack",
		len(lies), dropped)
	cl.endClean(t, victim)
}

// harnessHost is a plain host on the underlay subnet, which the nodes
// reach on-link.
func harnessHost(t *testing.T, cl *cluster) *harness.Host {
	t.Helper()
	return cl.topo.AddHost(t, "bf-evil", netip.MustParsePrefix("198.18.0.200/24"))
}
