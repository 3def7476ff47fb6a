// Package packet builds and parses the frames braid's tests send and
// inspect: Ethernet, IPv4 (with options), TCP, UDP and ARP, with correct
// lengths and checksums, written byte by byte so that any field can be
// forged. It is for tests (BPF_PROG_TEST_RUN inputs, captures), not for
// the datapath.
package packet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// MAC is an Ethernet address as the BPF maps keep it.
type MAC = [6]byte

// EtherTypes and IP protocols the tests use.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeIPv6 = 0x86dd
	EtherTypeVLAN = 0x8100

	ProtoICMP = 1
	ProtoTCP  = 6
	ProtoUDP  = 17

	ARPRequest = 1
	ARPReply   = 2
)

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
)

// Header lengths.
const (
	EthLen  = 14
	IPv4Len = 20 // without options
	UDPLen  = 8
	TCPLen  = 20 // without options
)

// Broadcast is ff:ff:ff:ff:ff:ff.
var Broadcast = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Ethernet frames payload (no FCS, no padding: the kernel adds neither).
func Ethernet(dst, src MAC, etherType uint16, payload []byte) []byte {
	b := make([]byte, 0, EthLen+len(payload))
	b = append(b, dst[:]...)
	b = append(b, src[:]...)
	b = binary.BigEndian.AppendUint16(b, etherType)
	return append(b, payload...)
}

// Checksum is the Internet checksum (RFC 1071) of b.
func Checksum(b []byte) uint16 {
	return fold(sum(0, b))
}

func sum(s uint32, b []byte) uint32 {
	for ; len(b) >= 2; b = b[2:] {
		s += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// pseudoSum is the sum of the IPv4 pseudo-header of an L4 segment.
func pseudoSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	s, d := src.As4(), dst.As4()
	ph := append(append(append([]byte{}, s[:]...), d[:]...), 0, proto, byte(length>>8), byte(length))
	return sum(0, ph)
}

// L4Checksum is the TCP or UDP checksum of segment (whose own checksum
// field must be zero, or it verifies to 0) over the IPv4 pseudo-header.
func L4Checksum(src, dst netip.Addr, proto uint8, segment []byte) uint16 {
	return fold(sum(pseudoSum(src, dst, proto, len(segment)), segment))
}

// IPv4 is an IPv4 header to marshal. Zero TTL means 64; Options are padded
// with zeros (end of options) to a multiple of 4 bytes, at most MaxOptions.
type IPv4 struct {
	Src, Dst netip.Addr
	Proto    uint8
	TOS      uint8
	TTL      uint8
	ID       uint16
	Frag     uint16 // flags and fragment offset; 0x4000 is DF
	Options  []byte
}

// MaxOptions is the most option bytes an IPv4 header holds (IHL 15).
const MaxOptions = 40

// Marshal returns the header followed by payload, with IHL, total length
// and header checksum filled in. Options beyond MaxOptions or a packet
// beyond 65535 bytes panic: their lengths do not fit in the header (forge
// such a header by editing the bytes Marshal returns).
func (h IPv4) Marshal(payload []byte) []byte {
	opts := append([]byte{}, h.Options...)
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	hl := IPv4Len + len(opts)
	if len(opts) > MaxOptions || hl+len(payload) > 0xffff {
		panic(fmt.Sprintf("packet: an IPv4 header cannot carry %d option bytes and a %d-byte payload", len(h.Options), len(payload)))
	}
	b := make([]byte, hl, hl+len(payload))
	b[0] = 0x40 | byte(hl/4)
	b[1] = h.TOS
	binary.BigEndian.PutUint16(b[2:], uint16(hl+len(payload)))
	binary.BigEndian.PutUint16(b[4:], h.ID)
	binary.BigEndian.PutUint16(b[6:], h.Frag)
	b[8] = h.TTL
	if b[8] == 0 {
		b[8] = 64
	}
	b[9] = h.Proto
	s, d := h.Src.As4(), h.Dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[IPv4Len:], opts)
	binary.BigEndian.PutUint16(b[10:], Checksum(b[:hl]))
	return append(b, payload...)
}

// IPv4Packet is a 20-byte-header IPv4 packet (TTL 64, DF, id 0x1234)
// around payload.
func IPv4Packet(src, dst netip.Addr, proto uint8, payload []byte) []byte {
	return IPv4{Src: src, Dst: dst, Proto: proto, ID: 0x1234, Frag: 0x4000}.Marshal(payload)
}

// UDP is a UDP datagram with its checksum over the IPv4 pseudo-header.
func UDP(src, dst netip.Addr, srcPort, dstPort uint16, payload []byte) []byte {
	n := UDPLen + len(payload)
	u := make([]byte, UDPLen, n)
	binary.BigEndian.PutUint16(u[0:], srcPort)
	binary.BigEndian.PutUint16(u[2:], dstPort)
	binary.BigEndian.PutUint16(u[4:], uint16(n))
	u = append(u, payload...)
	c := L4Checksum(src, dst, ProtoUDP, u)
	if c == 0 {
		c = 0xffff // 0 means "no checksum" in UDP over IPv4
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return u
}

// TCP is a TCP segment (no options, window 64240) with its checksum over
// the IPv4 pseudo-header.
func TCP(src, dst netip.Addr, srcPort, dstPort uint16, flags uint8, seq, ack uint32, payload []byte) []byte {
	t := make([]byte, TCPLen, TCPLen+len(payload))
	binary.BigEndian.PutUint16(t[0:], srcPort)
	binary.BigEndian.PutUint16(t[2:], dstPort)
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], ack)
	t[12] = byte(TCPLen/4) << 4
	t[13] = flags
	binary.BigEndian.PutUint16(t[14:], 64240)
	t = append(t, payload...)
	binary.BigEndian.PutUint16(t[16:], L4Checksum(src, dst, ProtoTCP, t))
	return t
}

// VXLANLen is the VXLAN header's length.
const VXLANLen = 8

// VXLAN is a VXLAN header (flags: VNI valid) with the low 24 bits of vni,
// followed by the inner frame: the payload of a UDP datagram to a tunnel
// port (see VXLANPorts).
func VXLAN(vni uint32, inner []byte) []byte {
	b := make([]byte, VXLANLen, VXLANLen+len(inner))
	b[0] = 0x08
	binary.BigEndian.PutUint32(b[4:], vni<<8)
	return append(b, inner...)
}

// ARP is an Ethernet/IPv4 ARP message.
func ARP(op uint16, sha MAC, spa netip.Addr, tha MAC, tpa netip.Addr) []byte {
	b := make([]byte, 0, 28)
	b = binary.BigEndian.AppendUint16(b, 1) // Ethernet
	b = binary.BigEndian.AppendUint16(b, EtherTypeIPv4)
	b = append(b, 6, 4)
	b = binary.BigEndian.AppendUint16(b, op)
	s, t := spa.As4(), tpa.As4()
	b = append(b, sha[:]...)
	b = append(b, s[:]...)
	b = append(b, tha[:]...)
	return append(b, t[:]...)
}
