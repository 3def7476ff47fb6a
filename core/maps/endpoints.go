// Package maps holds the Go side of the map contracts in bpf/include: maps
// that several plugins share, created and pinned once per node.
package maps

import (
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

func compatible(m *ebpf.Map) error {
	want := EndpointsSpec()
	if m.Type() != want.Type || m.KeySize() != want.KeySize || m.ValueSize() != want.ValueSize {
		return fmt.Errorf("layout %s/%d/%d does not match %s/%d/%d", m.Type(), m.KeySize(), m.ValueSize(),
			want.Type, want.KeySize, want.ValueSize)
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
