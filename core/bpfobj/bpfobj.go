// Package bpfobj loads a plugin's bpf2go objects the braid way: bpffs mounted,
// the shared endpoint map swapped in, private maps pinned by name under the
// plugin's own folder.
package bpfobj

import (
	"fmt"
	"strings"

	"github.com/braid-cni/braid/core/bpffs"
	"github.com/braid-cni/braid/core/maps"
	"github.com/cilium/ebpf"
)

// Spec is a bpf2go loadX function: the plugin's collection spec.
type Spec func() (*ebpf.CollectionSpec, error)

// Load fills objs (a bpf2go Objects struct) for plugin and returns the shared
// endpoint map, which the caller closes along with objs.
func Load(bpfRoot, plugin string, load Spec, objs any) (*maps.Endpoints, error) {
	if err := bpffs.Ensure(bpfRoot); err != nil {
		return nil, err
	}
	dir, err := bpffs.PluginDir(bpfRoot, plugin)
	if err != nil {
		return nil, err
	}
	eps, err := maps.OpenEndpoints(bpfRoot)
	if err != nil {
		return nil, err
	}
	spec, err := load()
	if err != nil {
		eps.Close()
		return nil, err
	}
	adjustLayout(spec)
	if _, err := migrate(spec, dir); err != nil {
		eps.Close()
		return nil, err
	}
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}}
	if _, ok := spec.Maps[maps.EndpointsPin]; ok {
		opts.MapReplacements = map[string]*ebpf.Map{maps.EndpointsPin: eps.Map}
	}
	if err := loadObjects(spec, opts, objs, dir); err != nil {
		eps.Close()
		return nil, fmt.Errorf("load %s programs: %w", plugin, err)
	}
	return eps, nil
}

// loadObjects loads the maps, then the programs: from their pins when
// current, else through the verifier, pinning them for the next call.
func loadObjects(spec *ebpf.CollectionSpec, opts *ebpf.CollectionOptions, objs any, dir string) error {
	mapsPart, progsPart, err := parts(objs)
	if err != nil {
		return err
	}
	for name, ms := range spec.Maps {
		if _, replaced := opts.MapReplacements[name]; ms.Pinning != ebpf.PinByName && !replaced && !strings.HasPrefix(name, ".") {
			// Programs loaded separately would get their own copy of this map.
			return spec.LoadAndAssign(objs, opts)
		}
	}
	if mapsPart != nil {
		if err := spec.LoadAndAssign(mapsPart, opts); err != nil {
			return err
		}
	}
	ids, err := loadedMapIDs(mapsPart)
	if err != nil {
		return err
	}
	if loadCached(spec, progsPart, ids, dir) {
		return nil
	}
	if err := spec.LoadAndAssign(progsPart, opts); err != nil {
		return err
	}
	return pinPrograms(spec, progsPart, dir)
}
