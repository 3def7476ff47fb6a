package bpfobj

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
)

// Programs are verified once per build and node, not once per CNI call: a
// loaded program is pinned as <dir>/progs/<name>@<hash of its spec> and
// reused while the maps it references are still the ones pinned now (a map
// recreated or migrated since means a fresh load). Links hold their own
// reference, so replacing a stale pin never detaches anything.

// parts splits a bpf2go Objects struct into its maps and programs structs.
func parts(objs any) (mapsPart, progsPart any, err error) {
	v := reflect.ValueOf(objs)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil, nil, fmt.Errorf("bpfobj: %T is not a pointer to a bpf2go Objects struct", objs)
	}
	v = v.Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() != reflect.Struct || f.NumField() == 0 {
			continue
		}
		// bpf2go embeds unexported struct types; address them directly.
		part := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Interface()
		switch f.Field(0).Type() {
		case reflect.TypeOf((*ebpf.Map)(nil)):
			mapsPart = part
		case reflect.TypeOf((*ebpf.Program)(nil)):
			progsPart = part
		}
	}
	if progsPart == nil {
		return nil, nil, fmt.Errorf("bpfobj: %T has no programs", objs)
	}
	return mapsPart, progsPart, nil
}

// fields maps each `ebpf:"name"` tag of a bpf2go struct to its field.
func fields(part any) map[string]reflect.Value {
	out := map[string]reflect.Value{}
	v := reflect.ValueOf(part).Elem()
	for i := range v.NumField() {
		if name := v.Type().Field(i).Tag.Get("ebpf"); name != "" {
			out[name] = v.Field(i)
		}
	}
	return out
}

// loadCached fills progsPart from pinned programs when every one is current,
// returning false (and nothing loaded) otherwise.
func loadCached(spec *ebpf.CollectionSpec, progsPart any, mapIDs map[string]ebpf.MapID, dir string) bool {
	loaded := map[string]*ebpf.Program{}
	ok := true
	for name := range fields(progsPart) {
		ps := spec.Programs[name]
		p, err := ebpf.LoadPinnedProgram(progPin(dir, name, ps), nil)
		if err != nil || !usesMaps(p, ps, mapIDs) {
			if p != nil {
				p.Close()
			}
			ok = false
			break
		}
		loaded[name] = p
	}
	if !ok {
		for _, p := range loaded {
			p.Close()
		}
		return false
	}
	for name, f := range fields(progsPart) {
		f.Set(reflect.ValueOf(loaded[name]))
	}
	return true
}

// pinPrograms pins freshly loaded programs for the next call and removes
// the pins of other builds of the same programs.
func pinPrograms(spec *ebpf.CollectionSpec, progsPart any, dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "progs"), 0o700); err != nil {
		return err
	}
	for name, f := range fields(progsPart) {
		pin := progPin(dir, name, spec.Programs[name])
		old, _ := filepath.Glob(filepath.Join(dir, "progs", name+"@*"))
		for _, o := range old {
			if err := os.Remove(o); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		if err := f.Interface().(*ebpf.Program).Pin(pin); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("pin program %s: %w", name, err)
		}
	}
	return nil
}

// progPin names a program's pin by a hash of what the verifier would see.
func progPin(dir, name string, ps *ebpf.ProgramSpec) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%d\x00", ps.Type, ps.AttachType, ps.License, ps.Flags)
	var buf bytes.Buffer
	_ = ps.Instructions.Marshal(&buf, binary.LittleEndian)
	h.Write(buf.Bytes())
	for _, ins := range ps.Instructions {
		if ins.IsLoadFromMap() {
			h.Write([]byte(ins.Reference() + "\x00"))
		}
	}
	return filepath.Join(dir, "progs", name+"@"+hex.EncodeToString(h.Sum(nil))[:16])
}

// usesMaps reports whether p references exactly the maps ps names, as they
// are loaded now.
func usesMaps(p *ebpf.Program, ps *ebpf.ProgramSpec, mapIDs map[string]ebpf.MapID) bool {
	info, err := p.Info()
	if err != nil {
		return false
	}
	have, ok := info.MapIDs()
	if !ok {
		return false
	}
	var want []ebpf.MapID
	for _, ins := range ps.Instructions {
		if !ins.IsLoadFromMap() {
			continue
		}
		id, ok := mapIDs[ins.Reference()]
		if !ok {
			return false
		}
		if !slices.Contains(want, id) {
			want = append(want, id)
		}
	}
	slices.Sort(want)
	have = slices.Clone(have)
	slices.Sort(have)
	return slices.Equal(want, have)
}

// loadedMapIDs are the kernel ids of the maps in mapsPart, by name.
func loadedMapIDs(mapsPart any) (map[string]ebpf.MapID, error) {
	out := map[string]ebpf.MapID{}
	if mapsPart == nil {
		return out, nil
	}
	for name, f := range fields(mapsPart) {
		m, _ := f.Interface().(*ebpf.Map)
		if m == nil {
			continue
		}
		info, err := m.Info()
		if err != nil {
			return nil, err
		}
		id, ok := info.ID()
		if !ok {
			return nil, fmt.Errorf("map %s: the kernel reports no id", name)
		}
		out[strings.TrimSpace(name)] = id
	}
	return out, nil
}
