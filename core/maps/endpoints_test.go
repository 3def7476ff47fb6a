package maps_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/internal/testenv"
	"github.com/cilium/ebpf"
)

// The C struct endpoint_info is 4+4+6+6+4 = 24 bytes with no padding; the
// Go mirror must encode to exactly that, field for field.
func TestEndpointInfoLayout(t *testing.T) {
	info := maps.EndpointInfo{
		Ifindex: 0x01020304,
		ID:      0x05060708,
		PodMAC:  [6]byte{0x11, 0x12, 0x13, 0x14, 0x15, 0x16},
		HostMAC: [6]byte{0x21, 0x22, 0x23, 0x24, 0x25, 0x26},
		Flags:   0x0a0b0c0d,
	}
	if n := binary.Size(info); n != 24 || uint32(n) != maps.EndpointsSpec().ValueSize {
		t.Fatalf("binary.Size(EndpointInfo) = %d, want 24 = ValueSize", n)
	}
	got, err := binary.Append(nil, binary.LittleEndian, info)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0x04, 0x03, 0x02, 0x01, // ifindex at 0
		0x08, 0x07, 0x06, 0x05, // id at 4
		0x11, 0x12, 0x13, 0x14, 0x15, 0x16, // pod_mac at 8
		0x21, 0x22, 0x23, 0x24, 0x25, 0x26, // host_mac at 14
		0x0d, 0x0c, 0x0b, 0x0a, // flags at 20
	}
	if string(got) != string(want) {
		t.Errorf("encoding = % x\nwant       % x", got, want)
	}
}

func TestKeyIsNetworkOrder(t *testing.T) {
	if k := maps.Key(netip.MustParseAddr("198.19.1.2")); k != [4]byte{198, 19, 1, 2} {
		t.Errorf("Key = %v", k)
	}
	if s := maps.MAC([6]byte{2, 0, 0xaa, 0xbb, 0xcc, 0xdd}); s != "02:00:aa:bb:cc:dd" {
		t.Errorf("MAC = %s", s)
	}
}

func openEndpoints(t *testing.T, root string) *maps.Endpoints {
	t.Helper()
	eps, err := maps.OpenEndpoints(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eps.Close() })
	return eps
}

func TestOpenEndpointsCreatesPinsAndReopens(t *testing.T) {
	root := testenv.BPFFS(t)
	eps := openEndpoints(t, root)
	pin := filepath.Join(root, maps.EndpointsPin)
	if _, err := os.Stat(pin); err != nil {
		t.Fatalf("endpoint map not pinned: %v", err)
	}
	if !eps.IsPinned() {
		t.Error("IsPinned() = false")
	}
	spec := maps.EndpointsSpec()
	info, err := eps.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != spec.Type || info.KeySize != spec.KeySize || info.ValueSize != spec.ValueSize ||
		info.MaxEntries != spec.MaxEntries || info.Flags != spec.Flags {
		t.Errorf("created map %+v does not match the spec %+v", info, spec)
	}

	ip := netip.MustParseAddr("198.19.1.2")
	want := maps.EndpointInfo{Ifindex: 7, ID: 3, PodMAC: [6]byte{2, 0, 0, 0, 0, 2}, HostMAC: [6]byte{2, 0, 0, 0, 0, 1}}
	if err := eps.Put(ip, want); err != nil {
		t.Fatal(err)
	}

	// A second user (another plugin process) opens the same map.
	again := openEndpoints(t, root)
	got, err := again.Get(ip)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("Get through the reopened map = %+v, want %+v", got, want)
	}
}

func TestEndpointsRoundTrip(t *testing.T) {
	eps := openEndpoints(t, testenv.BPFFS(t))
	entries := map[netip.Addr]maps.EndpointInfo{
		netip.MustParseAddr("198.19.1.2"): {Ifindex: 10, ID: 1, PodMAC: [6]byte{2, 1, 1, 1, 1, 1}, HostMAC: [6]byte{2, 9, 9, 9, 9, 1}},
		netip.MustParseAddr("198.19.1.3"): {Ifindex: 11, ID: 2, PodMAC: [6]byte{2, 1, 1, 1, 1, 2}, HostMAC: [6]byte{2, 9, 9, 9, 9, 2}},
		netip.MustParseAddr("198.19.1.4"): {Ifindex: 12, ID: 3, PodMAC: [6]byte{2, 1, 1, 1, 1, 3}, HostMAC: [6]byte{2, 9, 9, 9, 9, 3}},
	}
	for ip, info := range entries {
		if err := eps.Put(ip, info); err != nil {
			t.Fatal(err)
		}
	}
	all, err := eps.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(entries) {
		t.Fatalf("All() has %d entries, want %d", len(all), len(entries))
	}
	for ip, want := range entries {
		if all[ip] != want {
			t.Errorf("All()[%v] = %+v, want %+v", ip, all[ip], want)
		}
	}

	// Put overwrites.
	ip := netip.MustParseAddr("198.19.1.2")
	updated := entries[ip]
	updated.Ifindex = 99
	if err := eps.Put(ip, updated); err != nil {
		t.Fatal(err)
	}
	if got, _ := eps.Get(ip); got != updated {
		t.Errorf("after overwrite Get = %+v", got)
	}

	if err := eps.Remove(ip); err != nil {
		t.Fatal(err)
	}
	if _, err := eps.Get(ip); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("Get after Remove: %v, want ErrKeyNotExist", err)
	}
	if err := eps.Remove(ip); err != nil {
		t.Errorf("Remove of an absent entry: %v", err)
	}
	if all, _ := eps.All(); len(all) != 2 {
		t.Errorf("All() after Remove has %d entries, want 2", len(all))
	}
}

// A map pinned at <bpfRoot>/endpoints that is not the contract (an older
// layout, another tool's map) must be refused, not silently used.
func TestOpenEndpointsRefusesIncompatiblePin(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*ebpf.MapSpec)
	}{
		{"value size", func(s *ebpf.MapSpec) { s.ValueSize = 16 }},
		{"key size", func(s *ebpf.MapSpec) { s.KeySize = 8 }},
		{"type", func(s *ebpf.MapSpec) { s.Type = ebpf.LRUHash; s.Flags = 0 }},
		{"max entries", func(s *ebpf.MapSpec) { s.MaxEntries = 1024 }},
		{"flags", func(s *ebpf.MapSpec) { s.Flags = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := testenv.BPFFS(t)
			spec := maps.EndpointsSpec()
			tc.mutate(spec)
			m, err := ebpf.NewMap(spec)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if err := m.Pin(filepath.Join(root, maps.EndpointsPin)); err != nil {
				t.Fatal(err)
			}
			eps, err := maps.OpenEndpoints(root)
			if err == nil {
				eps.Close()
				t.Fatal("OpenEndpoints accepted an incompatible pinned map")
			}
			if !errors.Is(err, ebpf.ErrMapIncompatible) {
				t.Errorf("err = %v, want one wrapping ebpf.ErrMapIncompatible", err)
			}
		})
	}
}

func TestOpenEndpointsWithoutBPFFS(t *testing.T) {
	testenv.RequireRoot(t)
	// A plain directory cannot hold pins: the error must say so, not panic.
	if eps, err := maps.OpenEndpoints(t.TempDir()); err == nil {
		eps.Close()
		t.Fatal("OpenEndpoints pinned outside a bpffs")
	}
}

func TestIPv4Word(t *testing.T) {
	ip := netip.MustParseAddr("198.19.1.2")
	w := maps.IPv4Word(ip)
	var mem [4]byte
	binary.NativeEndian.PutUint32(mem[:], w)
	if mem != [4]byte{198, 19, 1, 2} {
		t.Errorf("IPv4Word(%v) holds % x in memory, want network order", ip, mem)
	}
	if back := maps.WordIPv4(w); back != ip {
		t.Errorf("WordIPv4(IPv4Word(%v)) = %v", ip, back)
	}
}

func TestCountersSumsCPUs(t *testing.T) {
	testenv.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	perCPU := make([]uint64, cpus)
	for i := range perCPU {
		perCPU[i] = uint64(i + 1)
	}
	if err := m.Put(uint32(2), perCPU); err != nil {
		t.Fatal(err)
	}
	got, err := maps.Counters(m)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{0, 0, uint64(cpus * (cpus + 1) / 2), 0}
	if !slices.Equal(got, want) {
		t.Errorf("Counters = %v, want %v", got, want)
	}
}
