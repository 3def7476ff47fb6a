package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/internal/testenv"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// The endpoint map contract has three copies: struct endpoint_info in C,
// maps.EndpointInfo in core, and the type bpf2go generated from the object.
// They must agree byte for byte.
func TestEndpointInfoMatchesObject(t *testing.T) {
	goSize := binary.Size(maps.EndpointInfo{})
	if genSize := binary.Size(vethEbpfEndpointInfo{}); goSize != 24 || genSize != goSize {
		t.Fatalf("binary.Size: maps.EndpointInfo %d, generated %d, want 24", goSize, genSize)
	}
	in := maps.EndpointInfo{Ifindex: 7, ID: 9, PodMAC: mac{1, 2, 3, 4, 5, 6}, HostMAC: mac{7, 8, 9, 10, 11, 12}, Flags: 0xabcd}
	gen := vethEbpfEndpointInfo{Ifindex: in.Ifindex, Id: in.ID, PodMac: in.PodMAC, HostMac: in.HostMAC, Flags: in.Flags}
	a, _ := binary.Append(nil, binary.NativeEndian, in)
	b, _ := binary.Append(nil, binary.NativeEndian, gen)
	if string(a) != string(b) {
		t.Errorf("encodings differ:\ncore      % x\ngenerated % x", a, b)
	}

	spec, err := loadVethEbpf()
	if err != nil {
		t.Fatal(err)
	}
	obj := spec.Maps[vethEbpfMapEndpoints]
	want := maps.EndpointsSpec()
	if obj.Type != want.Type || obj.KeySize != want.KeySize || obj.ValueSize != want.ValueSize ||
		obj.MaxEntries != want.MaxEntries || obj.Flags != want.Flags {
		t.Errorf("object's endpoints map %v/%d/%d/%d/%#x, core's %v/%d/%d/%d/%#x",
			obj.Type, obj.KeySize, obj.ValueSize, obj.MaxEntries, obj.Flags,
			want.Type, want.KeySize, want.ValueSize, want.MaxEntries, want.Flags)
	}

	// Field by field against the C struct's BTF.
	st, ok := obj.Value.(*btf.Struct)
	if !ok {
		t.Fatalf("endpoints value type is %T, want a struct", obj.Value)
	}
	goType := reflect.TypeFor[maps.EndpointInfo]()
	if len(st.Members) != goType.NumField() {
		t.Fatalf("C struct has %d members, Go %d fields", len(st.Members), goType.NumField())
	}
	for i, m := range st.Members {
		f := goType.Field(i)
		size, err := btf.Sizeof(m.Type)
		if err != nil {
			t.Fatal(err)
		}
		if uint32(f.Offset) != m.Offset.Bytes() || uintptr(size) != f.Type.Size() {
			t.Errorf("C %s at %d (%d bytes), Go %s at %d (%d bytes)",
				m.Name, m.Offset.Bytes(), size, f.Name, f.Offset, f.Type.Size())
		}
	}
}

// openDatapath on a fresh node root: endpoint map and counters pinned where
// the CLI and the other plugins look for them, and a second load (the next
// CNI call) reuses them.
func TestOpenDatapathPins(t *testing.T) {
	root := testenv.BPFFS(t)
	dp, err := openDatapath(root)
	if err == nil {
		_, err = dp.programs()
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, pin := range []string{
		filepath.Join(root, maps.EndpointsPin),
		filepath.Join(root, pluginName, vethEbpfMapCounters),
		filepath.Join(root, pluginName, "links"),
	} {
		if _, err := os.Stat(pin); err != nil {
			t.Errorf("missing %s: %v", pin, err)
		}
	}
	first, err := dp.objs.Counters.Info()
	if err != nil {
		t.Fatal(err)
	}
	dp.Close()

	dp, err = openDatapath(root)
	if err == nil {
		_, err = dp.programs()
	}
	if err != nil {
		t.Fatalf("second load: %v", err)
	}
	defer dp.Close()
	second, err := dp.objs.Counters.Info()
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := first.ID()
	id2, _ := second.ID()
	if id1 != id2 {
		t.Errorf("counters map recreated (id %d, then %d) instead of reused from its pin", id1, id2)
	}
	if dp.objs.FromContainer.Type() != ebpf.SchedCLS || dp.objs.ToContainer.Type() != ebpf.SchedCLS {
		t.Error("programs are not tc programs")
	}
}
