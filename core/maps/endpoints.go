// Package maps holds the Go side of the map contracts in bpf/include: maps
// that several plugins share, created and pinned once per node.
package maps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// EndpointsPin is the endpoint map's pin name under bpfRoot.
const EndpointsPin = "endpoints"

// EndpointsMax mirrors ENDPOINTS_MAX in bpf/include/endpoint.h.
const EndpointsMax = 65536

// EndpointInfo mirrors struct endpoint_info in bpf/include/endpoint.h.
type EndpointInfo struct {
	Ifindex uint32
	ID      uint32
	PodMAC  [6]byte
	HostMAC [6]byte
	Flags   uint32
}

// EndpointsSpec is the endpoint map as every plugin's object declares it.
func EndpointsSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{
		Name:       "endpoints",
		Type:       ebpf.Hash,
		KeySize:    4,
		ValueSize:  24,
		MaxEntries: EndpointsMax,
		Flags:      1, // BPF_F_NO_PREALLOC
	}
}

// Endpoints is the node's pinned endpoint map.
type Endpoints struct{ *ebpf.Map }

// OpenEndpoints opens the endpoint map pinned under bpfRoot, creating and
// pinning it if this is the first user on the node.
func OpenEndpoints(bpfRoot string) (*Endpoints, error) {
	pin := filepath.Join(bpfRoot, EndpointsPin)
	m, err := ebpf.LoadPinnedMap(pin, nil)
	if err == nil {
		if err := compatible(m); err != nil {
			m.Close()
			return nil, fmt.Errorf("endpoint map %s: %w", pin, err)
		}
		return &Endpoints{m}, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open endpoint map %s: %w", pin, err)
	}
	m, err = ebpf.NewMap(EndpointsSpec())
	if err != nil {
		return nil, fmt.Errorf("create endpoint map: %w", err)
	}
	if err := m.Pin(pin); err != nil {
		m.Close()
		if errors.Is(err, os.ErrExist) { // lost a race with another plugin
			return OpenEndpoints(bpfRoot)
		}
		return nil, fmt.Errorf("pin endpoint map %s: %w", pin, err)
	}
	return &Endpoints{m}, nil
}

// compatible checks everything a program load checks when it is given the
// map as a replacement (type, sizes, max entries, flags): a pinned map that
// passes here is one every plugin's object can use.
func compatible(m *ebpf.Map) error {
	if err := EndpointsSpec().Compatible(m); err != nil {
		return fmt.Errorf("pinned map does not match the contract in bpf/include/endpoint.h: %w", err)
	}
	return nil
}

// Key encodes an IPv4 address as the map key (network byte order in memory).
func Key(ip netip.Addr) [4]byte { return ip.As4() }

// Put writes the entry for ip.
func (e *Endpoints) Put(ip netip.Addr, info EndpointInfo) error {
	return e.Map.Put(Key(ip), info)
}

// Get reads the entry for ip.
func (e *Endpoints) Get(ip netip.Addr) (EndpointInfo, error) {
	var info EndpointInfo
	err := e.Lookup(Key(ip), &info)
	return info, err
}

// Remove deletes the entry for ip; absent is fine.
func (e *Endpoints) Remove(ip netip.Addr) error {
	if err := e.Delete(Key(ip)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

// All returns every entry.
func (e *Endpoints) All() (map[netip.Addr]EndpointInfo, error) {
	out := map[netip.Addr]EndpointInfo{}
	var k [4]byte
	var v EndpointInfo
	it := e.Iterate()
	for it.Next(&k, &v) {
		out[netip.AddrFrom4(k)] = v
	}
	return out, it.Err()
}

// MAC formats a map MAC for people.
func MAC(b [6]byte) string { return net.HardwareAddr(b[:]).String() }

// IPv4Word is ip as a u32 whose memory holds the address in network byte
// order: how the programs keep addresses (__be32).
func IPv4Word(ip netip.Addr) uint32 {
	b := ip.As4()
	return binary.NativeEndian.Uint32(b[:])
}

// WordIPv4 is the inverse of IPv4Word.
func WordIPv4(w uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], w)
	return netip.AddrFrom4(b)
}

// Port16 is a port as the programs keep it (__be16): network byte order in memory.
func Port16(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

// Unport16 is the inverse of Port16.
func Unport16(p uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], p)
	return binary.BigEndian.Uint16(b[:])
}
