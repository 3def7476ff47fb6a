package packet

// Fuzz targets of the Go mirrors of the packet formats: Parse takes any
// bytes without panicking and reports only what the frame holds; what the
// builders make parses back to the fields they were given, with checksums
// that verify.

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var (
	macA   = MAC{2, 0, 0, 0, 0, 1}
	macB   = MAC{2, 0, 0, 0, 0, 2}
	node1  = netip.MustParseAddr("198.18.0.1")
	node2  = netip.MustParseAddr("198.18.0.2")
	dsrOpt = []byte{0x9a, 8, 0x75, 0x80, 198, 18, 0, 1} // the dsr plugin's option
)

// seedFrames are frames of each kind braid's tests send, and cut ones.
func seedFrames() [][]byte {
	udp := Ethernet(macB, macA, EtherTypeIPv4, IPv4Packet(a, b, ProtoUDP, UDP(a, b, 40000, 8080, []byte("x"))))
	tcp := Ethernet(macB, macA, EtherTypeIPv4,
		IPv4{Src: a, Dst: b, Proto: ProtoTCP, Options: dsrOpt}.Marshal(TCP(a, b, 40000, 80, SYN, 1, 0, nil)))
	vx := Ethernet(macB, macA, EtherTypeIPv4, IPv4Packet(node1, node2, ProtoUDP, UDP(node1, node2, 33333, 8472, VXLAN(1, udp))))
	return [][]byte{
		udp, tcp, vx,
		Ethernet(Broadcast, macA, EtherTypeARP, ARP(ARPRequest, macA, a, MAC{}, b)),
		Ethernet(macB, macA, EtherTypeIPv4, IPv4{Src: a, Dst: b, Proto: ProtoUDP, Frag: 0x2000}.Marshal([]byte{1, 2, 3})),
		Ethernet(macB, macA, EtherTypeIPv6, make([]byte, 40)),
		udp[:EthLen+IPv4Len], tcp[:len(tcp)-1], vx[:len(vx)-8],
	}
}

func addr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, v)))
}

func u32(a netip.Addr) uint32 { return binary.BigEndian.Uint32(a.AsSlice()) }

// FuzzParse: Parse never panics, and what it accepts it describes
// truthfully: every field is the frame's own bytes, every slice lies inside
// the frame and within the lengths the header gives.
func FuzzParse(f *testing.F) {
	for _, fr := range seedFrames() {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := Parse(b)
		if err != nil {
			if fr != nil {
				t.Errorf("Parse returned a frame and the error %v", err)
			}
			return
		}
		requireTruthful(t, fr, b)
	})
}

// requireTruthful checks fr against the bytes b it was parsed from.
func requireTruthful(t *testing.T, fr *Frame, b []byte) {
	t.Helper()
	_ = fr.String()
	_, _ = fr.IPChecksumOK(), fr.L4ChecksumOK()
	if fr.DstMAC != MAC(b[0:6]) || fr.SrcMAC != MAC(b[6:12]) || fr.EtherType != binary.BigEndian.Uint16(b[12:]) {
		t.Fatalf("Ethernet fields %s of % x", fr, b[:EthLen])
	}
	if fr.EtherType != EtherTypeIPv4 {
		if fr.IP != nil || fr.Inner != nil {
			t.Fatalf("IPv4 fields in a frame of EtherType %#04x", fr.EtherType)
		}
		return
	}
	ip := b[EthLen:]
	hl := fr.IHL * 4
	switch {
	case fr.IHL < 5 || hl > fr.TotLen || fr.TotLen > len(ip) || fr.TotLen != int(binary.BigEndian.Uint16(ip[2:])):
		t.Fatalf("accepted IHL %d, total length %d in %d bytes of IPv4", fr.IHL, fr.TotLen, len(ip))
	case !bytes.Equal(fr.IP, ip[:hl]) || !bytes.Equal(fr.Options, ip[IPv4Len:hl]) || !bytes.Equal(fr.L4, ip[hl:fr.TotLen]):
		t.Fatalf("header, options or payload are not the frame's: %s", fr)
	case fr.Src != netip.AddrFrom4([4]byte(ip[12:16])) || fr.Dst != netip.AddrFrom4([4]byte(ip[16:20])) ||
		fr.Proto != ip[9] || fr.TTL != ip[8]:
		t.Fatalf("addresses, protocol or TTL are not the header's: %s", fr)
	case !bytes.HasSuffix(fr.L4, fr.Payload):
		t.Fatalf("payload outside the segment: %s", fr)
	}
	requireOptionsWithin(t, fr)
	if fr.Inner == nil {
		return
	}
	if fr.Proto != ProtoUDP || !slices.Contains(VXLANPorts, fr.DstPort) || len(fr.Payload) < VXLANLen+EthLen ||
		fr.VNI != binary.BigEndian.Uint32(fr.Payload[4:])>>8 {
		t.Fatalf("decoded VXLAN in %s", fr)
	}
	requireTruthful(t, fr.Inner, fr.Payload[VXLANLen:])
}

// requireOptionsWithin: whatever Option returns is an option of that type
// (type and length bytes included) inside the header's options.
func requireOptionsWithin(t *testing.T, fr *Frame) {
	t.Helper()
	for typ := range 256 {
		o := fr.Option(byte(typ))
		if o == nil {
			continue
		}
		if len(o) < 2 || o[0] != byte(typ) || int(o[1]) != len(o) || !bytes.Contains(fr.Options, o) {
			t.Fatalf("Option(%#02x) = % x from options % x", typ, o, fr.Options)
		}
	}
}

// requirePanic checks that fn panics.
func requirePanic(t *testing.T, what string, fn func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", what)
		}
	}()
	fn()
}

// FuzzIPv4: Marshal's header parses back to its fields (TTL 0 as 64, the
// options padded to 32 bits) around the payload, and its checksum
// verifies; options that do not fit an IPv4 header panic.
func FuzzIPv4(f *testing.F) {
	f.Add(u32(a), u32(b), uint8(ProtoUDP), uint8(0), uint8(0), uint16(0x1234), uint16(0x4000), []byte(nil), UDP(a, b, 1, 2, nil))
	f.Add(u32(a), u32(b), uint8(ProtoTCP), uint8(0x10), uint8(1), uint16(0), uint16(0), dsrOpt, TCP(a, b, 1, 2, SYN, 0, 0, nil))
	f.Add(u32(a), u32(b), uint8(ProtoICMP), uint8(0), uint8(255), uint16(7), uint16(0x2001), []byte{7, 3, 4}, []byte{8, 0})
	f.Add(uint32(0), ^uint32(0), uint8(ProtoUDP), uint8(0), uint8(64), uint16(0), uint16(0), make([]byte, MaxOptions+1), []byte{})
	f.Fuzz(func(t *testing.T, src, dst uint32, proto, tos, ttl uint8, id, frag uint16, options, payload []byte) {
		h := IPv4{Src: addr(src), Dst: addr(dst), Proto: proto, TOS: tos, TTL: ttl, ID: id, Frag: frag, Options: options}
		padded := append(bytes.Clone(options), make([]byte, (4-len(options)%4)%4)...)
		if len(padded) > MaxOptions || IPv4Len+len(padded)+len(payload) > 0xffff {
			requirePanic(t, "Marshal of an oversized header", func() { h.Marshal(payload) })
			return
		}
		frame := Ethernet(macB, macA, EtherTypeIPv4, h.Marshal(payload))
		fr, err := Parse(frame)
		if err != nil {
			// Only the TCP or UDP header of a first fragment may be rejected.
			if (proto != ProtoTCP && proto != ProtoUDP) || frag&0x3fff != 0 {
				t.Fatalf("Parse of a marshalled %+v: %v", h, err)
			}
			return
		}
		ip := frame[EthLen:]
		wantTTL := ttl
		if wantTTL == 0 {
			wantTTL = 64
		}
		if fr.Src != h.Src || fr.Dst != h.Dst || fr.Proto != proto || fr.TTL != wantTTL || ip[1] != tos ||
			binary.BigEndian.Uint16(ip[4:]) != id || binary.BigEndian.Uint16(ip[6:]) != frag {
			t.Errorf("marshalled %+v, parsed %s", h, fr)
		}
		if fr.IHL != 5+len(padded)/4 || fr.TotLen != len(ip) || !bytes.Equal(fr.Options, padded) || !bytes.Equal(fr.L4, payload) {
			t.Errorf("lengths, options or payload: marshalled %+v, parsed %s", h, fr)
		}
		if !fr.IPChecksumOK() {
			t.Errorf("the header checksum does not verify: % x", fr.IP)
		}
	})
}

// FuzzOption: an option put first (after up to three NOPs) is the one
// Option finds, whatever follows it.
func FuzzOption(f *testing.F) {
	f.Add(uint8(0x9a), dsrOpt[2:], []byte{}, uint8(0))
	f.Add(uint8(7), []byte{4}, []byte{0x9a, 8, 1, 2, 3, 4, 5, 6}, uint8(1))
	f.Add(uint8(0x44), []byte{}, []byte{0, 0x44, 2}, uint8(3))
	f.Fuzz(func(t *testing.T, typ uint8, data, rest []byte, nops uint8) {
		if typ < 2 || 2+len(data) > MaxOptions {
			t.Skip("end of options and NOP have no body; an option is at most 40 bytes")
		}
		opt := append([]byte{typ, byte(2 + len(data))}, data...)
		options := append(append(bytes.Repeat([]byte{1}, int(nops%4)), opt...), rest...)
		if len(options) > MaxOptions {
			t.Skip("options beyond an IPv4 header")
		}
		fr, err := Parse(Ethernet(macB, macA, EtherTypeIPv4, IPv4{Src: a, Dst: b, Proto: ProtoICMP, Options: options}.Marshal(nil)))
		if err != nil {
			t.Fatal(err)
		}
		if got := fr.Option(typ); !bytes.Equal(got, opt) {
			t.Errorf("Option(%#02x) of % x = % x, want % x", typ, fr.Options, got, opt)
		}
		requireOptionsWithin(t, fr)
	})
}

// FuzzL4: UDP and TCP segments parse back to their ports, flags and
// payload; their checksums verify, and no longer do once a payload byte
// changes.
func FuzzL4(f *testing.F) {
	f.Add(u32(a), u32(b), uint16(40000), uint16(8080), false, uint8(0), uint32(0), uint32(0), []byte("odd"))
	f.Add(u32(a), u32(b), uint16(40000), uint16(80), true, uint8(SYN), uint32(1), uint32(0), []byte{})
	f.Add(uint32(0), uint32(0), uint16(0), uint16(0), true, uint8(ACK|PSH|FIN), ^uint32(0), ^uint32(0), []byte("hello"))
	f.Fuzz(func(t *testing.T, src, dst uint32, sport, dport uint16, tcp bool, flags uint8, seq, ack uint32, payload []byte) {
		if IPv4Len+TCPLen+len(payload) > 0xffff {
			t.Skip("beyond an IPv4 packet")
		}
		s, d := addr(src), addr(dst)
		proto, seg := uint8(ProtoUDP), []byte(nil)
		if tcp {
			proto, seg = ProtoTCP, TCP(s, d, sport, dport, flags, seq, ack, payload)
		} else {
			if slices.Contains(VXLANPorts, dport) {
				dport++ // FuzzVXLAN's
			}
			seg = UDP(s, d, sport, dport, payload)
		}
		fr, err := Parse(Ethernet(macB, macA, EtherTypeIPv4, IPv4Packet(s, d, proto, seg)))
		if err != nil {
			t.Fatal(err)
		}
		if fr.SrcPort != sport || fr.DstPort != dport || !bytes.Equal(fr.Payload, payload) || (tcp && fr.TCPFlags != flags) {
			t.Errorf("built ports %d > %d, flags %#02x, payload % x; parsed %s, payload % x", sport, dport, flags, payload, fr, fr.Payload)
		}
		if !fr.L4ChecksumOK() || (!tcp && fr.L4Checksum() == 0) {
			t.Errorf("checksum %#04x does not verify: %s", fr.L4Checksum(), fr)
		}
		if len(payload) > 0 {
			fr.Payload[len(payload)/2] ^= 0xff
			if fr.L4ChecksumOK() {
				t.Errorf("a changed payload still verifies: %s", fr)
			}
		}
	})
}

// FuzzVXLAN: a VXLAN datagram to a tunnel port parses to the inner frame
// as Parse sees it alone, with the VNI's 24 bits; an inner frame Parse
// rejects makes the datagram rejected, and one too short for an Ethernet
// header is no inner frame.
func FuzzVXLAN(f *testing.F) {
	for _, fr := range seedFrames() {
		f.Add(uint32(1), fr, false)
	}
	f.Add(^uint32(0), []byte{}, true)
	f.Fuzz(func(t *testing.T, vni uint32, inner []byte, iana bool) {
		port := VXLANPorts[1]
		if iana {
			port = VXLANPorts[0]
		}
		vx := VXLAN(vni, inner)
		if IPv4Len+UDPLen+len(vx) > 0xffff {
			t.Skip("beyond an IPv4 packet")
		}
		if vx[0] != 0x08 || !bytes.Equal(vx[1:4], []byte{0, 0, 0}) || vx[7] != 0 || !bytes.Equal(vx[VXLANLen:], inner) {
			t.Fatalf("VXLAN header % x", vx[:VXLANLen])
		}
		fr, err := Parse(Ethernet(macB, macA, EtherTypeIPv4, IPv4Packet(node1, node2, ProtoUDP, UDP(node1, node2, 33333, port, vx))))
		if len(inner) < EthLen {
			if err != nil || fr.Inner != nil {
				t.Fatalf("a %d-byte inner frame: %v, %v", len(inner), fr, err)
			}
			return
		}
		want, wantErr := Parse(inner)
		if wantErr != nil {
			if err == nil || !strings.Contains(err.Error(), "inside VXLAN") || !strings.Contains(err.Error(), wantErr.Error()) {
				t.Fatalf("inner frame rejected alone (%v), in VXLAN: %v", wantErr, err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if fr.VNI != vni&0xffffff || !reflect.DeepEqual(fr.Inner, want) {
			t.Errorf("VNI %d, inner %s; built VNI %d, inner %s", fr.VNI, fr.Inner, vni, want)
		}
	})
}

// FuzzARP: an ARP message holds its fields where RFC 826 puts them, for
// Ethernet and IPv4, and a frame of it parses as ARP.
func FuzzARP(f *testing.F) {
	f.Add(uint16(ARPRequest), uint64(0x02_00_00_00_00_01), u32(a), uint64(0), u32(b))
	f.Add(uint16(ARPReply), ^uint64(0), ^uint32(0), uint64(0x02_bd_00_00_00_07), uint32(0))
	f.Fuzz(func(t *testing.T, op uint16, sha uint64, spa uint32, tha uint64, tpa uint32) {
		mac := func(v uint64) MAC { return MAC(binary.BigEndian.AppendUint64(nil, v)[2:]) }
		smac, tmac := mac(sha), mac(tha)
		m := ARP(op, smac, addr(spa), tmac, addr(tpa))
		want := binary.BigEndian.AppendUint16([]byte{0, 1, 0x08, 0, 6, 4}, op)
		want = binary.BigEndian.AppendUint32(append(want, smac[:]...), spa)
		want = binary.BigEndian.AppendUint32(append(want, tmac[:]...), tpa)
		if !bytes.Equal(m, want) {
			t.Fatalf("ARP\n% x\nwant\n% x", m, want)
		}
		fr, err := Parse(Ethernet(Broadcast, smac, EtherTypeARP, m))
		if err != nil || fr.EtherType != EtherTypeARP || fr.SrcMAC != smac || fr.IP != nil {
			t.Fatalf("parsed %v, %v", fr, err)
		}
	})
}
