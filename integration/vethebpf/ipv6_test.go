package vethebpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/packet"
	"golang.org/x/sys/unix"
)

// TestOnlyIPv4IntoPods: braid's datapath is IPv4-only. ADD turns IPv6 off
// on the pod's interface, and to_container lets nothing but untagged IPv4
// for the pod, and ARP, into it: an IPv6 frame and an 802.1Q frame the
// node writes out of the pod's host veth (a raw packet socket, as anything
// on the node could) are dropped and counted (drop_proto, drop_vlan), and
// the pod's interface receives neither; an IPv4 frame for the pod after
// them arrives.
func TestOnlyIPv4IntoPods(t *testing.T) {
	n, c := setup(t)
	p := c.AddPod(t, "p")
	if v, err := p.ReadSysctl("net/ipv6/conf/" + p.IfName + "/disable_ipv6"); err != nil || v != "1" {
		t.Errorf("disable_ipv6 on the pod's %s: %q, %v; want 1", p.IfName, v, err)
	}
	hostIf, hostMAC := p.HostIf()
	podMAC, me := packet.MAC(p.MAC()), packet.MAC(hostMAC)
	marker := []byte("not-for-this-pod")
	ipv6 := make([]byte, 40+8+len(marker))
	ipv6[0] = 0x60
	binary.BigEndian.PutUint16(ipv6[4:], uint16(8+len(marker)))
	ipv6[6], ipv6[7] = 17, 64                         // UDP, hop limit
	copy(ipv6[8:], []byte{0xfe, 0x80, 14: 0, 15: 1})  // fe80::1
	copy(ipv6[24:], []byte{0xfe, 0x80, 14: 0, 15: 2}) // fe80::2
	copy(ipv6[48:], marker)
	rx := p.ListenUDP(t, ":0")
	port := uint16(rx.LocalAddr().(*net.UDPAddr).Port)
	udpTo := func(payload []byte) []byte {
		return packet.Ethernet(podMAC, me, packet.EtherTypeIPv4,
			packet.IPv4Packet(n.IP, p.IP, packet.ProtoUDP, packet.UDP(n.IP, p.IP, 40000, port, payload)))
	}
	ipv4 := udpTo([]byte("ipv4"))
	untagged := udpTo(marker)
	tagged := append(append(bytes.Clone(untagged[:12]), 0x81, 0x00, 0x00, 0x07), untagged[12:]...)
	for _, tc := range []struct {
		name, counter string
		frame         []byte
	}{
		{"IPv6", "drop_proto", packet.Ethernet(podMAC, me, packet.EtherTypeIPv6, ipv6)},
		{"802.1Q", "drop_vlan", tagged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sniff := p.Sniff(t, p.IfName)
			before := n.CounterSet(t, plugin)
			// The sender learns of a drop at egress: ENOBUFS.
			if err := n.SendRaw(hostIf, tc.frame); err != nil && !errors.Is(err, unix.ENOBUFS) {
				t.Fatal(err)
			}
			deadline := time.Now().Add(2 * time.Second)
			for n.CounterSet(t, plugin).Delta(t, before, tc.counter) < 1 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if d := n.CounterSet(t, plugin).Since(before); d[tc.counter] != 1 || d["to_container"] != 0 {
				t.Errorf("counters moved %s, want %s+1", harness.FormatDeltas(d), tc.counter)
			}
			for _, f := range sniff.Stop() {
				if bytes.Contains(f, marker) {
					t.Errorf("the pod received it: % x", f)
				}
			}
			if err := n.SendRaw(hostIf, ipv4); err != nil {
				t.Fatal(err)
			}
			if got, err := harness.ReadUDP(rx, 2*time.Second); err != nil || string(got) != "ipv4" {
				t.Errorf("the IPv4 frame after it: %q, %v", got, err)
			}
		})
	}
}
