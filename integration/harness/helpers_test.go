package harness

import (
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/braid-cni/braid/internal/packet"
)

// Tests of the helpers that need no root: the pcap reader, the VXLAN
// decoder and the counter names read from the plugins' sources.

func TestReadPcap(t *testing.T) {
	a, b := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	inner := packet.Ethernet(packet.MAC{2}, packet.MAC{3}, packet.EtherTypeIPv4,
		packet.IPv4Packet(netip.MustParseAddr("198.19.1.2"), netip.MustParseAddr("198.19.2.2"), packet.ProtoUDP,
			packet.UDP(netip.MustParseAddr("198.19.1.2"), netip.MustParseAddr("198.19.2.2"), 1, 2, []byte("x"))))
	vx := append(binary.BigEndian.AppendUint32([]byte{0x08, 0, 0, 0}, 42<<8), inner...)
	frames := [][]byte{
		packet.Ethernet(packet.MAC{1}, packet.MAC{2}, packet.EtherTypeIPv4, packet.IPv4Packet(a, b, packet.ProtoUDP, packet.UDP(a, b, 5000, 9472, vx))),
		packet.Ethernet(packet.Broadcast, packet.MAC{2}, packet.EtherTypeARP, packet.ARP(packet.ARPRequest, packet.MAC{2}, a, packet.MAC{}, b)),
	}
	file := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	file = append(file, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	file = binary.LittleEndian.AppendUint32(file, 262144)
	file = binary.LittleEndian.AppendUint32(file, 1) // Ethernet
	for i, f := range frames {
		file = binary.LittleEndian.AppendUint32(file, uint32(i))
		file = binary.LittleEndian.AppendUint32(file, 0)
		file = binary.LittleEndian.AppendUint32(file, uint32(len(f)))
		file = binary.LittleEndian.AppendUint32(file, uint32(len(f)))
		file = append(file, f...)
	}
	path := filepath.Join(t.TempDir(), "c.pcap")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readPcap(path)
	if err != nil || len(got) != 2 || !slices.Equal(got[0], frames[0]) || !slices.Equal(got[1], frames[1]) {
		t.Fatalf("readPcap: %d frames, %v", len(got), err)
	}
	if err := os.WriteFile(path, file[:len(file)-3], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readPcap(path); err == nil {
		t.Error("a truncated record is not reported")
	}

	f := packet.MustParse(frames[0])
	if _, _, ok := VXLANInner(f, 8472); ok {
		t.Error("decoded VXLAN on the wrong port")
	}
	in, vni, ok := VXLANInner(f, 9472)
	if !ok || vni != 42 || in.Src != netip.MustParseAddr("198.19.1.2") || in.DstPort != 2 {
		t.Errorf("VXLANInner: %v %d %v", in, vni, ok)
	}
}

func TestCounterNames(t *testing.T) {
	for _, p := range []string{"veth-ebpf", "vxlan-tunnel", "native-route"} {
		if names := CounterNames(t, p); len(names) < 5 {
			t.Errorf("%s: %v", p, names)
		}
	}
	s := CounterSet{Plugin: "p", Names: []string{"a", "b"}, Values: []uint64{5, 7}}
	before := CounterSet{Plugin: "p", Names: []string{"a", "b"}, Values: []uint64{5, 3}}
	if d := s.Since(before); len(d) != 1 || d["b"] != 4 || s.Delta(t, before, "b") != 4 {
		t.Errorf("Since: %v", d)
	}
}
