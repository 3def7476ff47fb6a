package hostile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/packet"
	"github.com/braid-cni/braid/internal/testenv"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// mutate damages a copy of frame: a few random bytes in its headers, a
// random cut, or junk appended; sometimes all of them.
func mutate(rng *rand.Rand, frame []byte) []byte {
	f := bytes.Clone(frame)
	headers := min(len(f), 14+28)
	for range 1 + rng.IntN(4) {
		f[rng.IntN(headers)] = byte(rng.UintN(256))
	}
	if rng.IntN(3) == 0 {
		f = f[:14+rng.IntN(len(f)-14+1)]
	}
	if rng.IntN(10) == 0 {
		junk := make([]byte, rng.IntN(64))
		for i := range junk {
			junk[i] = byte(rng.UintN(256))
		}
		f = append(f, junk...)
	}
	return f
}

func seed(t *testing.T) uint64 {
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("BRAID_HOSTILE_SEED"); v != "" {
		fmt.Sscan(v, &s)
	}
	t.Logf("random frames seed %d (BRAID_HOSTILE_SEED reproduces it)", s)
	return s
}

// TestRandomFramesFromPod: a pod sends BRAID_HOSTILE_FRAMES frames, each an
// honest frame (to a pod on its node, a pod on the other node, the node,
// ARP) damaged at random. Whatever reaches the two victim pods must come
// from the attacker's own address with an IPv4 header whose lengths add up;
// every frame gets exactly one verdict of veth-ebpf's from_container (see
// requireEveryFrameCounted); afterwards everything works as before.
func TestRandomFramesFromPod(t *testing.T) {
	n := testenv.EnvInt(t, "BRAID_HOSTILE_FRAMES", 3000)
	rng := rand.New(rand.NewPCG(seed(t), 2))
	cl := twoNodes(t, "vxlan.conflist")
	attacker, near, far := cl.c1.AddPod(t, "attacker"), cl.c1.AddPod(t, "near"), cl.c2.AddPod(t, "far")
	_, nearAddr := listen(t, near)
	_, farAddr := listen(t, far)
	_, gw := attacker.HostIf()
	me := packet.MAC(attacker.MAC())
	honest := [][]byte{
		frameTo(attacker, nearAddr, []byte("storm")),
		frameTo(attacker, farAddr, []byte("storm")),
		frameTo(attacker, netip.AddrPortFrom(cl.n1.IP, 9), []byte("storm")),
		packet.Ethernet(packet.Broadcast, me, packet.EtherTypeARP,
			packet.ARP(packet.ARPRequest, me, attacker.IP, packet.MAC{}, netip.MustParseAddr("169.254.1.1"))),
		packet.Ethernet(packet.MAC(gw), me, packet.EtherTypeIPv4, packet.IPv4Packet(attacker.IP, near.IP, packet.ProtoTCP,
			packet.TCP(attacker.IP, near.IP, 40000, nearAddr.Port(), packet.SYN, 1, 0, nil))),
	}
	sniffers := map[string]*harness.Sniffer{"near": near.Sniff(t, near.IfName), "far": far.Sniff(t, far.IfName)}
	senders := []*harness.Pod{attacker, near} // the pods behind node 1's veth-ebpf
	txBefore := txPackets(t, senders)
	before := cl.n1.CounterSet(t, "veth-ebpf")
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = mutate(rng, honest[rng.IntN(len(honest))])
	}
	for i := 0; i < n; i += 100 {
		if err := attacker.SendRaw(frames[i:min(n, i+100)]...); err != nil {
			t.Fatal(err)
		}
	}
	delivered := 0
	for name, s := range sniffers {
		frames := s.Stop()
		if s.Dropped > 0 {
			t.Errorf("%s: the sniffer lost %d frames", name, s.Dropped)
		}
		for _, f := range frames {
			delivered++
			src, ip := ipv4Src(f)
			if !ip {
				t.Errorf("%s received a frame that is not IPv4: %s", name, describe(f))
				continue
			}
			if src != attacker.IP {
				t.Errorf("%s received a frame from %s: %s", name, src, describe(f))
			}
			if !headerConsistent(f) {
				t.Errorf("%s received an IPv4 header that lies about its lengths: %s", name, describe(f))
			}
		}
	}
	unseen := 0
	for _, f := range frames {
		if droppedBeforeTC(f) {
			unseen++
		}
	}
	handed := requireEveryFrameCounted(t, cl.n1, senders, txBefore, before, uint64(unseen))
	if handed[0] < uint64(n) {
		t.Errorf("the attacker's interface handed on %d frames, fewer than the %d sent", handed[0], n)
	}
	seen := cl.n1.CounterSet(t, "veth-ebpf").Since(before)
	pingBoth(t, attacker, near)
	pingBoth(t, attacker, far)
	t.Logf("FIGURE random frames from a pod: %d sent; %d frames reached the victims, all IPv4 from the attacker's address with sane headers; "+
		"the pods' interfaces handed node 1 %d frames (attacker %d, near %d: their stacks' own replies and ARP included), "+
		"%d short VLAN frames dropped by the kernel before tc, every other one given one verdict by from_container: veth-ebpf counted %s",
		n, delivered, handed[0]+handed[1], handed[0], handed[1], unseen, harness.FormatDeltas(seen))
	cl.endClean(t, attacker, near, far)
}

// droppedBeforeTC reports whether the host side's kernel drops frame
// before any tc program: skb_vlan_untag (in __netif_receive_skb_core)
// pulls a VLAN tag (802.1Q or 802.1ad) and the 2 bytes after it, and frees
// a frame too short for that, uncounted. A VLAN frame it can untag reaches
// the program, tag stripped.
func droppedBeforeTC(frame []byte) bool {
	et := binary.BigEndian.Uint16(frame[12:])
	return (et == 0x8100 || et == 0x88a8) && len(frame) < 14+4+2
}

// fromPodVerdicts are the counters of veth-ebpf's from_container: it adds
// one to exactly one of them for each frame a pod's interface hands to the
// host side. to_container counts drop_malformed too, but only for frames
// of the node's stack, which builds no malformed IPv4 header.
var fromPodVerdicts = []string{"redirect_peer", "pass_next", "drop_spoof_ip", "drop_spoof_mac", "drop_spoof_arp", "drop_proto", "drop_malformed", "drop_vlan"}

// requireEveryFrameCounted checks that, since txBefore and before,
// from_container's verdicts on n rose by as many frames as the pods (all
// those behind n's veth-ebpf) handed to their host side, less the unseen
// ones the host side's kernel drops before tc (droppedBeforeTC): no frame
// escaped a verdict and none was counted twice. What the pods' interfaces
// count (tx_packets) is what crossed to the host side; a frame the
// sender's kernel refused or dropped before (tx_dropped, reported) never
// reached the program and is not counted. It returns each pod's frames
// handed on.
func requireEveryFrameCounted(t *testing.T, n *harness.Node, pods []*harness.Pod, txBefore []linkTx, before harness.CounterSet, unseen uint64) []uint64 {
	t.Helper()
	var handed []uint64
	var verdicts, total uint64
	// Counted in softirq, on either CPU: wait for the last verdicts.
	for end := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		tx := txPackets(t, pods)
		now := n.CounterSet(t, "veth-ebpf")
		handed, verdicts, total = make([]uint64, len(pods)), 0, 0
		for i := range pods {
			handed[i] = tx[i].packets - txBefore[i].packets
			total += handed[i]
			if d := tx[i].dropped - txBefore[i].dropped; d > 0 {
				t.Logf("%s's interface dropped %d frames before the host side", pods[i].Name, d)
			}
		}
		for _, name := range fromPodVerdicts {
			verdicts += now.Delta(t, before, name)
		}
		if verdicts+unseen == total || time.Now().After(end) {
			break
		}
	}
	if verdicts+unseen != total {
		t.Errorf("the pods' interfaces handed on %d frames (%d of them dropped before tc), from_container counted %d verdicts",
			total, unseen, verdicts)
	}
	return handed
}

// linkTx are an interface's transmit counters.
type linkTx struct{ packets, dropped uint64 }

// txPackets reads each pod's interface's transmit counters.
func txPackets(t *testing.T, pods []*harness.Pod) []linkTx {
	t.Helper()
	out := make([]linkTx, len(pods))
	for i, p := range pods {
		err := p.NS.Do(func() error {
			l, err := netlink.LinkByName(p.IfName)
			if err != nil {
				return err
			}
			if s := l.Attrs().Statistics; s != nil {
				out[i] = linkTx{s.TxPackets, s.TxDropped}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
	}
	return out
}

// TestRandomVXLANFromPeer: node 2 (a known peer, so its datagrams pass the
// outer-source check) sends node 1's tunnel port BRAID_HOSTILE_FRAMES
// datagrams, each an honest VXLAN frame for a pod of node 1 damaged at
// random: VXLAN header, inner Ethernet and IPv4 headers. This runs
// from_overlay on real tunnel metadata, which BPF_PROG_TEST_RUN cannot give
// it. Whatever reaches the pod must be IPv4 from node 2's pod CIDR or node
// 2, with sane headers; node 1 keeps working.
func TestRandomVXLANFromPeer(t *testing.T) {
	n := testenv.EnvInt(t, "BRAID_HOSTILE_FRAMES", 3000)
	rng := rand.New(rand.NewPCG(seed(t), 3))
	cl := twoNodes(t, "vxlan.conflist")
	victim, remote := cl.c1.AddPod(t, "victim"), cl.c2.AddPod(t, "remote")
	_, dst := listen(t, victim)
	src := remote.IP
	inner := packet.Ethernet(packet.MAC{0x02, 0xbd, 0, 0, 0, 1}, packet.MAC{0x02, 0xbd, 0, 0, 0, 2}, packet.EtherTypeIPv4,
		packet.IPv4Packet(src, dst.Addr(), packet.ProtoUDP, packet.UDP(src, dst.Addr(), 40000, dst.Port(), []byte("storm"))))
	honest := packet.VXLAN(1, inner)

	sniff := victim.Sniff(t, victim.IfName)
	before := cl.n1.CounterSet(t, "vxlan-tunnel")
	err := cl.n2.Do(func() error {
		c, err := net.Dial("udp4", netip.AddrPortFrom(cl.n1.IP, vxlanPort).String())
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range n {
			d := bytes.Clone(honest)
			// Damage the VXLAN header now and then, the inner frame always.
			if rng.IntN(8) == 0 {
				d[rng.IntN(packet.VXLANLen)] = byte(rng.UintN(256))
			}
			d = append(d[:packet.VXLANLen], mutate(rng, d[packet.VXLANLen:])...)
			if _, err := c.Write(d); err != nil && !isRefused(err) {
				return fmt.Errorf("datagram %d: %w", i, err)
			}
			if i%200 == 199 {
				time.Sleep(5 * time.Millisecond) // let the receiver keep up
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	delivered := 0
	frames := sniff.Stop()
	if sniff.Dropped > 0 {
		t.Errorf("the sniffer lost %d frames", sniff.Dropped)
	}
	for _, f := range frames {
		delivered++
		s, ip := ipv4Src(f)
		if !ip {
			t.Errorf("the victim received a frame that is not IPv4: %s", describe(f))
			continue
		}
		if !cl.n2.PodCIDR.Contains(s) && s != cl.n2.IP {
			t.Errorf("the victim received a frame from %s, outside node 2's pods: %s", s, describe(f))
		}
		if !headerConsistent(f) {
			t.Errorf("the victim received an IPv4 header that lies about its lengths: %s", describe(f))
		}
	}
	seen := cl.n1.CounterSet(t, "vxlan-tunnel").Since(before)
	pingBoth(t, victim, remote)
	victim.RequireUDP(t, remote.NS, remote.IP)
	t.Logf("FIGURE random VXLAN from a peer: %d datagrams sent; %d frames reached the pod, all IPv4 from node 2's pods with sane headers; vxlan-tunnel counted %s",
		n, delivered, harness.FormatDeltas(seen))
	cl.endClean(t, victim, remote)
}

// isRefused: an ICMP port unreachable from an earlier datagram.
func isRefused(err error) bool { return errors.Is(err, unix.ECONNREFUSED) }
