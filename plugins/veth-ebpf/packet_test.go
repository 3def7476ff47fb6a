package main

// The BPF tests' frame builders are internal/packet's; these short names
// keep the test tables readable.

import (
	"net/netip"

	"github.com/braid-cni/braid/internal/packet"
)

type mac = packet.MAC

const (
	etherTypeIPv4 = packet.EtherTypeIPv4
	etherTypeARP  = packet.EtherTypeARP
	etherTypeIPv6 = packet.EtherTypeIPv6
	etherTypeVLAN = packet.EtherTypeVLAN
	protoUDP      = packet.ProtoUDP
	arpRequest    = packet.ARPRequest
	arpReply      = packet.ARPReply
)

var (
	broadcastMAC = packet.Broadcast
	ethernet     = packet.Ethernet
	checksum     = packet.Checksum
	ipv4         = packet.IPv4Packet // TTL 64, DF
	udp          = packet.UDP
	arp          = packet.ARP
)

// udpFrame is a whole Ethernet/IPv4/UDP frame from (srcMAC, src) to (dstMAC, dst).
func udpFrame(dstMAC, srcMAC mac, src, dst netip.Addr) []byte {
	return ethernet(dstMAC, srcMAC, etherTypeIPv4,
		ipv4(src, dst, protoUDP, udp(src, dst, 40000, 5201, []byte("braid test payload"))))
}
