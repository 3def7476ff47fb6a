// Package bpfobj loads a plugin's bpf2go objects the braid way: bpffs mounted,
// the shared endpoint map swapped in, private maps pinned by name under the
// plugin's own folder.
package bpfobj

import (
	"fmt"

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
	if _, err := migrate(spec, dir); err != nil {
		eps.Close()
		return nil, err
	}
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}}
	if _, ok := spec.Maps[maps.EndpointsPin]; ok {
		opts.MapReplacements = map[string]*ebpf.Map{maps.EndpointsPin: eps.Map}
	}
	if err := spec.LoadAndAssign(objs, opts); err != nil {
		eps.Close()
		return nil, fmt.Errorf("load %s programs: %w", plugin, err)
	}
	return eps, nil
}
