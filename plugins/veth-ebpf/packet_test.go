package main

// Small frame encoders for the BPF tests: just enough Ethernet, IPv4, UDP and
// ARP to build the packets a pod sends, with correct lengths and checksums.

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

type mac = [6]byte

const (
	etherTypeIPv4 = 0x0800
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100
	protoUDP      = 17
	arpRequest    = 1
	arpReply      = 2
)

var broadcastMAC = mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// ethernet frames payload (no FCS, no padding: the kernel adds neither).
func ethernet(dst, src mac, etherType uint16, payload []byte) []byte {
	b := make([]byte, 0, 14+len(payload))
	b = append(b, dst[:]...)
	b = append(b, src[:]...)
	b = binary.BigEndian.AppendUint16(b, etherType)
	return append(b, payload...)
}

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 {
	var sum uint32
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// ipv4 builds a 20-byte-header IPv4 packet (TTL 64, DF) around payload.
func ipv4(src, dst netip.Addr, proto uint8, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0] = 0x45 // version 4, IHL 5
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(h[4:], 0x1234) // id
	binary.BigEndian.PutUint16(h[6:], 0x4000) // DF
	h[8] = 64
	h[9] = proto
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], checksum(h))
	return append(h, payload...)
}

// udp builds a UDP datagram with its checksum over the IPv4 pseudo-header.
func udp(src, dst netip.Addr, srcPort, dstPort uint16, payload []byte) []byte {
	n := 8 + len(payload)
	u := make([]byte, 8, n)
	binary.BigEndian.PutUint16(u[0:], srcPort)
	binary.BigEndian.PutUint16(u[2:], dstPort)
	binary.BigEndian.PutUint16(u[4:], uint16(n))
	u = append(u, payload...)
	s, d := src.As4(), dst.As4()
	pseudo := append(append(append([]byte{}, s[:]...), d[:]...), 0, protoUDP, byte(n>>8), byte(n))
	c := checksum(append(pseudo, u...))
	if c == 0 {
		c = 0xffff // 0 means "no checksum" in UDP over IPv4
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return u
}

// arp builds an Ethernet/IPv4 ARP message.
func arp(op uint16, sha mac, spa netip.Addr, tha mac, tpa netip.Addr) []byte {
	b := make([]byte, 0, 28)
	b = binary.BigEndian.AppendUint16(b, 1) // Ethernet
	b = binary.BigEndian.AppendUint16(b, etherTypeIPv4)
	b = append(b, 6, 4)
	b = binary.BigEndian.AppendUint16(b, op)
	s, t := spa.As4(), tpa.As4()
	b = append(b, sha[:]...)
	b = append(b, s[:]...)
	b = append(b, tha[:]...)
	return append(b, t[:]...)
}

// udpFrame is a whole Ethernet/IPv4/UDP frame from (srcMAC, src) to (dstMAC, dst).
func udpFrame(dstMAC, srcMAC mac, src, dst netip.Addr) []byte {
	return ethernet(dstMAC, srcMAC, etherTypeIPv4,
		ipv4(src, dst, protoUDP, udp(src, dst, 40000, 5201, []byte("braid test payload"))))
}

func TestChecksum(t *testing.T) {
	// The example header of RFC 1071's usual illustration (Wikipedia's
	// "IPv4 header checksum"): its checksum field holds 0xb861.
	hdr := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
		0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if c := checksum(hdr); c != 0xb861 {
		t.Errorf("checksum = %#04x, want 0xb861", c)
	}
	ip := ipv4(netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("198.19.0.3"), protoUDP, nil)
	if c := checksum(ip); c != 0 {
		t.Errorf("a header with its checksum must sum to 0, got %#04x", c)
	}
	src, dst := netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("198.19.0.3")
	u := udp(src, dst, 1, 2, []byte("odd"))
	s, d := src.As4(), dst.As4()
	pseudo := append(append(append([]byte{}, s[:]...), d[:]...), 0, protoUDP, 0, byte(len(u)))
	if c := checksum(append(pseudo, u...)); c != 0 {
		t.Errorf("UDP checksum does not verify: %#04x", c)
	}
	if n := len(arp(arpRequest, mac{}, src, mac{}, dst)); n != 28 {
		t.Errorf("ARP body is %d bytes, want 28", n)
	}
}
