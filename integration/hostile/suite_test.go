// Package hostile is braid's suite of misbehaving pods (and a misbehaving
// underlay): forged ARP, VXLAN sent from a pod to a node's tunnel port,
// IPv4 headers that lie about their lengths, VLAN-tagged frames, forged
// sources after a repair re-attached the programs out of order, and storms
// of random and truncated frames. Each forged packet must be dropped and
// counted, and none may reach a pod it does not belong to. Every test ends
// by deleting its pods and checking the nodes for leftovers (endClean).
//
// Covered elsewhere and not repeated here: a pod spoofing its source IPv4
// address or MAC (integration/vethebpf TestAntiSpoofing and
// TestSpoofedFrameToNode), VXLAN from underlay hosts that are not nodes at
// length (integration/vxlantunnel TestForgedVXLAN; TestVXLANFromPod sends
// one such datagram), a forged DSR option from a pod
// (integration/dsr and plugins/dsr TestForgedOptionFromPod, and the dsr
// FuzzPrograms property).
//
// Knobs: BRAID_HOSTILE_FRAMES (random frames per storm, default 3000).
package hostile

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/packet"
)

// vxlanPort is the tunnel port of chain-configs/vxlan.conflist.
const vxlanPort = 8472

type cluster struct {
	topo   *harness.Topology
	n1, n2 *harness.Node
	c1, c2 *harness.Chain
}

// twoNodes builds two meshed nodes running conflist, synced.
func twoNodes(t *testing.T, conflist string) *cluster {
	t.Helper()
	topo := harness.New(t)
	c := &cluster{topo: topo, n1: topo.AddNode(t), n2: topo.AddNode(t)}
	harness.Mesh(t, c.n1, c.n2)
	c.c1, c.c2 = c.n1.Conflist(t, conflist), c.n2.Conflist(t, conflist)
	c.c1.RequireSync(t)
	c.c2.RequireSync(t)
	return c
}

// endClean ends a test the way RELIABILITY.md says every hostile test
// ends: each pod deleted as a runtime would, then each node checked from
// outside for anything left of them (harness.FindLeaks: store endpoints and
// allocations, endpoint map entries, per-pod pins, host veths, routes,
// neighbour entries, braid status problems).
func (c *cluster) endClean(t *testing.T, pods ...*harness.Pod) {
	t.Helper()
	endClean(t, []*harness.Node{c.n1, c.n2}, pods...)
}

func endClean(t *testing.T, nodes []*harness.Node, pods ...*harness.Pod) {
	t.Helper()
	for _, p := range pods {
		if err := p.Del(); err != nil {
			t.Errorf("DEL %s: %v", p.Name, err)
		}
	}
	for _, n := range nodes {
		n.RequireNoLeaks(t)
	}
}

// listen opens a UDP socket in the pod and returns it and its address.
func listen(t *testing.T, p *harness.Pod) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	c := p.ListenUDP(t, ":0")
	return c, netip.AddrPortFrom(p.IP, uint16(c.LocalAddr().(*net.UDPAddr).Port))
}

// requireSilent fails t if c receives anything within d.
func requireSilent(t *testing.T, c *net.UDPConn, d time.Duration, what string) {
	t.Helper()
	if got, err := harness.ReadUDP(c, d); err == nil {
		t.Errorf("%s: the victim received %q", what, got)
	}
}

// waitCounter waits up to two seconds for plugin's counter name on n to
// reach before+want, and returns how much it rose.
func waitCounter(t *testing.T, n *harness.Node, plugin string, before harness.CounterSet, name string, want uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		d := n.CounterSet(t, plugin).Delta(t, before, name)
		if d >= want || time.Now().After(deadline) {
			return d
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ipStats are the IPv4 receive counters of a netns's stack
// (/proc/net/snmp, read by a thread inside it).
func ipStats(t *testing.T, ns *harness.NS) map[string]int64 {
	t.Helper()
	var raw []byte
	err := ns.Do(func() (err error) {
		raw, err = os.ReadFile("/proc/thread-self/net/snmp")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "Ip:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		for i, v := range f[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			out[names[i]] = n
		}
	}
	return out
}

// frameTo is a UDP frame from pod p to dst as p's stack would send it.
func frameTo(p *harness.Pod, dst netip.AddrPort, payload []byte) []byte {
	_, gw := p.HostIf()
	return packet.Ethernet(packet.MAC(gw), packet.MAC(p.MAC()), packet.EtherTypeIPv4,
		packet.IPv4Packet(p.IP, dst.Addr(), packet.ProtoUDP, packet.UDP(p.IP, dst.Addr(), 40000, dst.Port(), payload)))
}

// headerConsistent mirrors what the datapath guarantees of an IPv4 header
// it lets through (see internal/bpftest.HeaderConsistent).
func headerConsistent(frame []byte) bool {
	if len(frame) < 14+20 || frame[14]>>4 != 4 {
		return false
	}
	ihl := int(frame[14]&0x0f) * 4
	tot := int(binary.BigEndian.Uint16(frame[14+2:]))
	return ihl >= 20 && tot >= ihl && 14+tot <= len(frame)
}

func ipv4Src(frame []byte) (netip.Addr, bool) {
	if len(frame) < 14+20 || binary.BigEndian.Uint16(frame[12:]) != packet.EtherTypeIPv4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(frame[14+12 : 14+16])), true
}

func describe(frame []byte) string {
	n := min(len(frame), 64)
	return fmt.Sprintf("%d bytes: % x", len(frame), frame[:n])
}

// pingBoth pings a <-> b, failing t on loss.
func pingBoth(t *testing.T, a, b *harness.Pod) {
	t.Helper()
	if err := a.Ping(b.IP); err != nil {
		t.Errorf("%s -> %s: %v", a.Name, b.Name, err)
	}
	if err := b.Ping(a.IP); err != nil {
		t.Errorf("%s -> %s: %v", b.Name, a.Name, err)
	}
}
