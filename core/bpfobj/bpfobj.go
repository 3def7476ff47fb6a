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

// Loader is a bpf2go loadXObjects function.
type Loader func(obj any, opts *ebpf.CollectionOptions) error

// Load fills objs (a bpf2go Objects struct) for plugin and returns the shared
// endpoint map, which the caller closes along with objs.
func Load(bpfRoot, plugin string, load Loader, objs any) (*maps.Endpoints, error) {
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
	opts := &ebpf.CollectionOptions{
		Maps:            ebpf.MapOptions{PinPath: dir},
		MapReplacements: map[string]*ebpf.Map{"endpoints": eps.Map},
	}
	if err := load(objs, opts); err != nil {
		eps.Close()
		return nil, fmt.Errorf("load %s programs: %w", plugin, err)
	}
	return eps, nil
}
