package packet

import (
	"bytes"
	"net/netip"
	"testing"
)

var (
	a = netip.MustParseAddr("198.18.1.10")
	b = netip.MustParseAddr("198.19.2.5")
)

func TestChecksum(t *testing.T) {
	// The usual illustration of the IPv4 header checksum: its checksum
	// field holds 0xb861.
	hdr := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
		0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if c := Checksum(hdr); c != 0xb861 {
		t.Errorf("Checksum = %#04x, want 0xb861", c)
	}
	if c := Checksum([]byte{0x01}); c != ^uint16(0x0100) {
		t.Errorf("odd length: %#04x", c)
	}
}

func TestRoundTrip(t *testing.T) {
	smac, dmac := MAC{2, 0, 0, 0, 0, 1}, MAC{2, 0, 0, 0, 0, 2}
	for _, tc := range []struct {
		name  string
		proto uint8
		l4    []byte
		opts  []byte
	}{
		{"udp", ProtoUDP, UDP(a, b, 40000, 8080, []byte("odd")), nil},
		{"tcp syn", ProtoTCP, TCP(a, b, 40000, 8080, SYN, 1, 0, nil), nil},
		{"tcp data with options", ProtoTCP, TCP(a, b, 40000, 8080, ACK|PSH, 2, 3, []byte("hello")), []byte{1, 0x9a, 8, 0x75, 0x80, 198, 18, 0}},
		{"padded option", ProtoUDP, UDP(a, b, 1, 2, nil), []byte{7, 3, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame := Ethernet(dmac, smac, EtherTypeIPv4, IPv4{Src: a, Dst: b, Proto: tc.proto, Options: tc.opts}.Marshal(tc.l4))
			f, err := Parse(frame)
			if err != nil {
				t.Fatal(err)
			}
			if f.SrcMAC != smac || f.DstMAC != dmac || f.Src != a || f.Dst != b || f.Proto != tc.proto {
				t.Errorf("parsed %s", f)
			}
			if want := 5 + (len(tc.opts)+3)/4; f.IHL != want {
				t.Errorf("IHL %d, want %d", f.IHL, want)
			}
			if !f.IPChecksumOK() || !f.L4ChecksumOK() {
				t.Errorf("checksums do not verify: %s", f)
			}
			if f.SrcPort == 0 || f.DstPort == 0 || !bytes.Equal(f.L4, tc.l4) {
				t.Errorf("L4 mismatch: %s", f)
			}
			f.L4[len(f.L4)-1] ^= 0xff
			if f.L4ChecksumOK() {
				t.Error("a corrupted segment still verifies")
			}
		})
	}
}

func TestOption(t *testing.T) {
	f := MustParse(Ethernet(MAC{}, MAC{}, EtherTypeIPv4,
		IPv4{Src: a, Dst: b, Proto: ProtoUDP, Options: []byte{1, 1, 0x9a, 8, 0x75, 0x80, 198, 18, 0, 1}}.Marshal(UDP(a, b, 1, 2, nil))))
	if got := f.Option(0x9a); !bytes.Equal(got, []byte{0x9a, 8, 0x75, 0x80, 198, 18, 0, 1}) {
		t.Errorf("Option(0x9a) = % x", got)
	}
	if got := f.Option(7); got != nil {
		t.Errorf("Option(7) = % x, want nil", got)
	}
}

func TestVXLAN(t *testing.T) {
	inner := Ethernet(MAC{1}, MAC{2}, EtherTypeIPv4, IPv4Packet(a, b, ProtoTCP, TCP(a, b, 5, 6, SYN, 0, 0, nil)))
	vx := VXLAN(1, inner)
	n1, n2 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	outer := Ethernet(MAC{3}, MAC{4}, EtherTypeIPv4, IPv4Packet(n1, n2, ProtoUDP, UDP(n1, n2, 33333, 8472, vx)))
	f := MustParse(outer)
	if f.Inner == nil || f.VNI != 1 || f.Innermost().Dst != b || f.Innermost().TCPFlags != SYN {
		t.Fatalf("parsed %s", f)
	}
}
