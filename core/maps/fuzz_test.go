package maps

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"
)

// FuzzByteOrder: the Go mirrors of the programs' __be32 and __be16 keep the
// address and port in network byte order in memory, whatever the host's
// order, and the inverses undo them.
func FuzzByteOrder(f *testing.F) {
	f.Add([]byte{198, 19, 1, 2}, uint16(8080))
	f.Add([]byte{255, 255, 255, 255}, uint16(0xffff))
	f.Add([]byte{0, 0, 0, 0}, uint16(0))
	f.Add([]byte{1, 0, 0, 0}, uint16(1))
	f.Fuzz(func(t *testing.T, b []byte, port uint16) {
		if len(b) != 4 {
			t.Skip()
		}
		ip := netip.AddrFrom4([4]byte(b))
		w := IPv4Word(ip)
		if mem := unsafe.Slice((*byte)(unsafe.Pointer(&w)), 4); !bytes.Equal(mem, b) {
			t.Errorf("IPv4Word(%s) holds % x in memory, want % x", ip, mem, b)
		}
		if back := WordIPv4(w); back != ip {
			t.Errorf("WordIPv4(IPv4Word(%s)) = %s", ip, back)
		}
		if k := Key(ip); !bytes.Equal(k[:], b) {
			t.Errorf("Key(%s) = % x", ip, k)
		}
		p := Port16(port)
		want := binary.BigEndian.AppendUint16(nil, port)
		if mem := unsafe.Slice((*byte)(unsafe.Pointer(&p)), 2); !bytes.Equal(mem, want) {
			t.Errorf("Port16(%d) holds % x in memory, want % x", port, mem, want)
		}
		if back := Unport16(p); back != port {
			t.Errorf("Unport16(Port16(%d)) = %d", port, back)
		}
	})
}

// FuzzEndpointInfo: the Go mirror of struct endpoint_info encodes to the
// 24 bytes the C struct has, fields at the C offsets, and decodes back.
func FuzzEndpointInfo(f *testing.F) {
	f.Add(uint32(7), uint32(1), []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2}, uint32(0))
	f.Fuzz(func(t *testing.T, ifindex, id uint32, macs []byte, flags uint32) {
		if len(macs) != 12 {
			t.Skip()
		}
		in := EndpointInfo{Ifindex: ifindex, ID: id, PodMAC: [6]byte(macs[:6]), HostMAC: [6]byte(macs[6:]), Flags: flags}
		raw, err := binary.Append(nil, binary.NativeEndian, in)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) != int(EndpointsSpec().ValueSize) {
			t.Fatalf("%d bytes, the map's value is %d", len(raw), EndpointsSpec().ValueSize)
		}
		if binary.NativeEndian.Uint32(raw[0:]) != ifindex || binary.NativeEndian.Uint32(raw[4:]) != id ||
			!bytes.Equal(raw[8:20], macs) || binary.NativeEndian.Uint32(raw[20:]) != flags {
			t.Errorf("layout % x", raw)
		}
		var out EndpointInfo
		if _, err := binary.Decode(raw, binary.NativeEndian, &out); err != nil || out != in {
			t.Errorf("decoded %+v (%v), want %+v", out, err, in)
		}
	})
}
