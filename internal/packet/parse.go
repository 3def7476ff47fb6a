package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// VXLANPorts are the UDP destination ports Parse decodes as VXLAN: the
// IANA port and the Linux default braid's conflists use.
var VXLANPorts = []uint16{4789, 8472}

// Frame is a parsed Ethernet frame. The IPv4 fields are set when EtherType
// is IPv4; the L4 fields when the packet is TCP or UDP and not a fragment.
type Frame struct {
	DstMAC, SrcMAC MAC
	EtherType      uint16

	IP       []byte // the IPv4 header, options included
	IHL      int    // header length in 32-bit words
	TotLen   int
	Src, Dst netip.Addr
	Proto    uint8
	TTL      uint8
	Options  []byte // IP options, IP[20:]
	L4       []byte // the IP payload, up to TotLen

	SrcPort, DstPort uint16
	TCPFlags         uint8
	Payload          []byte // after the TCP or UDP header

	// Inner is the encapsulated frame of a VXLAN packet, else nil.
	Inner *Frame
	VNI   uint32
}

// Parse decodes an Ethernet frame: IPv4, TCP, UDP and VXLAN (see
// VXLANPorts) as far as they go. Anything that is not IPv4 is returned with
// just its Ethernet fields; a malformed IPv4 packet is an error.
func Parse(b []byte) (*Frame, error) {
	if len(b) < EthLen {
		return nil, fmt.Errorf("frame of %d bytes is shorter than an Ethernet header", len(b))
	}
	f := &Frame{EtherType: binary.BigEndian.Uint16(b[12:])}
	copy(f.DstMAC[:], b[0:6])
	copy(f.SrcMAC[:], b[6:12])
	if f.EtherType != EtherTypeIPv4 {
		return f, nil
	}
	ip := b[EthLen:]
	if len(ip) < IPv4Len || ip[0]>>4 != 4 {
		return nil, errors.New("not an IPv4 header")
	}
	f.IHL = int(ip[0] & 0x0f)
	f.TotLen = int(binary.BigEndian.Uint16(ip[2:]))
	if f.IHL < 5 || f.TotLen < f.IHL*4 || f.TotLen > len(ip) {
		return nil, fmt.Errorf("IPv4 header with IHL %d, total length %d in %d bytes", f.IHL, f.TotLen, len(ip))
	}
	f.IP = ip[:f.IHL*4]
	f.Options = f.IP[IPv4Len:]
	f.Src = netip.AddrFrom4([4]byte(ip[12:16]))
	f.Dst = netip.AddrFrom4([4]byte(ip[16:20]))
	f.Proto, f.TTL = ip[9], ip[8]
	f.L4 = ip[f.IHL*4 : f.TotLen]
	if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
		return f, nil // a fragment: ports only in the first, if at all
	}
	switch f.Proto {
	case ProtoUDP:
		if len(f.L4) < UDPLen {
			return nil, errors.New("short UDP header")
		}
		f.SrcPort, f.DstPort = binary.BigEndian.Uint16(f.L4), binary.BigEndian.Uint16(f.L4[2:])
		f.Payload = f.L4[UDPLen:]
		for _, p := range VXLANPorts {
			if f.DstPort == p && len(f.Payload) >= VXLANLen+EthLen {
				f.VNI = binary.BigEndian.Uint32(f.Payload[4:]) >> 8
				inner, err := Parse(f.Payload[VXLANLen:])
				if err != nil {
					return nil, fmt.Errorf("inside VXLAN: %w", err)
				}
				f.Inner = inner
			}
		}
	case ProtoTCP:
		if len(f.L4) < TCPLen {
			return nil, errors.New("short TCP header")
		}
		f.SrcPort, f.DstPort = binary.BigEndian.Uint16(f.L4), binary.BigEndian.Uint16(f.L4[2:])
		f.TCPFlags = f.L4[13]
		off := int(f.L4[12]>>4) * 4
		if off < TCPLen || off > len(f.L4) {
			return nil, fmt.Errorf("TCP data offset %d in a %d-byte segment", off, len(f.L4))
		}
		f.Payload = f.L4[off:]
	}
	return f, nil
}

// MustParse is Parse for frames the test built itself.
func MustParse(b []byte) *Frame {
	f, err := Parse(b)
	if err != nil {
		panic(err)
	}
	return f
}

// Innermost is the frame inside any VXLAN encapsulation.
func (f *Frame) Innermost() *Frame {
	for f.Inner != nil {
		f = f.Inner
	}
	return f
}

// IPChecksumOK reports whether the IPv4 header checksum verifies.
func (f *Frame) IPChecksumOK() bool {
	return f.IP != nil && Checksum(f.IP) == 0
}

// L4ChecksumOK reports whether the TCP or UDP checksum verifies (a UDP
// checksum of 0, "none", counts as valid).
func (f *Frame) L4ChecksumOK() bool {
	switch f.Proto {
	case ProtoUDP:
		if len(f.L4) >= UDPLen && binary.BigEndian.Uint16(f.L4[6:]) == 0 {
			return true
		}
	case ProtoTCP:
	default:
		return false
	}
	return L4Checksum(f.Src, f.Dst, f.Proto, f.L4) == 0
}

// L4Checksum is the checksum field of the TCP or UDP header, or 0.
func (f *Frame) L4Checksum() uint16 {
	switch {
	case f.Proto == ProtoUDP && len(f.L4) >= UDPLen:
		return binary.BigEndian.Uint16(f.L4[6:])
	case f.Proto == ProtoTCP && len(f.L4) >= TCPLen:
		return binary.BigEndian.Uint16(f.L4[16:])
	}
	return 0
}

// Option returns the first IP option of type typ, type and length bytes
// included, or nil. End-of-list stops the walk; NOP is one byte.
func (f *Frame) Option(typ byte) []byte {
	o := f.Options
	for len(o) > 0 {
		switch o[0] {
		case 0: // end of options
			return nil
		case 1: // no operation
			o = o[1:]
			continue
		}
		if len(o) < 2 || o[1] < 2 || int(o[1]) > len(o) {
			return nil
		}
		if o[0] == typ {
			return o[:o[1]]
		}
		o = o[o[1]:]
	}
	return nil
}

// AddrPorts are the frame's source and destination address and port.
func (f *Frame) AddrPorts() (src, dst netip.AddrPort) {
	return netip.AddrPortFrom(f.Src, f.SrcPort), netip.AddrPortFrom(f.Dst, f.DstPort)
}

func (f *Frame) String() string {
	if f.IP == nil {
		return fmt.Sprintf("ethertype %#04x %x > %x", f.EtherType, f.SrcMAC, f.DstMAC)
	}
	s := fmt.Sprintf("%s:%d > %s:%d proto %d ihl %d len %d", f.Src, f.SrcPort, f.Dst, f.DstPort, f.Proto, f.IHL, f.TotLen)
	if len(f.Options) > 0 {
		s += fmt.Sprintf(" options % x", f.Options)
	}
	if f.Proto == ProtoTCP {
		s += fmt.Sprintf(" flags %#02x", f.TCPFlags)
	}
	if f.Inner != nil {
		s += " vxlan [" + f.Inner.String() + "]"
	}
	return s
}
