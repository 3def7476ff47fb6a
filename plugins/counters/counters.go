// Package counters is the Go side of every plugin's counter reasons, the
// one contract between a plugin's programs and whoever reads its counters
// map (the plugin's status, braid agent's metrics, tests, benchmarks).
//
// Each reason is defined once, in C: enum counter in
// bpf/include/<plugin>_counters.h. bpf2go -type (a go:generate line of
// each plugin, over bpf/counters.c) writes the typed constants here, e.g.
// VethEbpfCounterCNT_DROP_SPOOF_IP; Names reads the counter names from the
// same compiled enum. Renaming or removing a reason is thus a compile error
// wherever its constant is used.
package counters

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// specs are the compiled enums by plugin name.
var specs = map[string]func() (*ebpf.CollectionSpec, error){
	"veth-ebpf":    LoadVethEbpf,
	"vxlan-tunnel": LoadVxlanTunnel,
	"native-route": LoadNativeRoute,
	"sock-lb":      LoadSockLB,
	"dsr":          LoadDSR,
}

var names sync.Map // plugin -> []string

// Plugins are the plugins that have counters.
func Plugins() []string {
	out := make([]string, 0, len(specs))
	for p := range specs {
		out = append(out, p)
	}
	return out
}

// Names are plugin's counter names, index by index: each CNT_<NAME> of its
// enum as <name>, lower case ("drop_spoof_ip"). They are metric labels and
// what `braid status` shows. An unknown plugin has none (nil).
func Names(plugin string) []string {
	if v, ok := names.Load(plugin); ok {
		return v.([]string)
	}
	load, ok := specs[plugin]
	if !ok {
		return nil
	}
	n, err := enumNames(load)
	if err != nil {
		// The embedded object is generated and checked by the tests: a
		// failure here is a broken build, not a runtime condition.
		panic(fmt.Sprintf("counters of %s: %v", plugin, err))
	}
	names.Store(plugin, n)
	return n
}

// Name is the name of plugin's counter i, or its number when it has none.
func Name(plugin string, i int) string {
	if n := Names(plugin); i >= 0 && i < len(n) {
		return n[i]
	}
	return fmt.Sprint(i)
}

// enumNames reads enum counter from a compiled object's BTF; its values
// must be dense from 0, as they index an array map.
func enumNames(load func() (*ebpf.CollectionSpec, error)) ([]string, error) {
	spec, err := load()
	if err != nil {
		return nil, err
	}
	var enum *btf.Enum
	if err := spec.Types.TypeByName("counter", &enum); err != nil {
		return nil, err
	}
	out := make([]string, len(enum.Values))
	for _, v := range enum.Values {
		if v.Value >= uint64(len(out)) || out[v.Value] != "" {
			return nil, fmt.Errorf("enum counter: %s = %d leaves a gap or repeats a value", v.Name, v.Value)
		}
		name, ok := strings.CutPrefix(v.Name, "CNT_")
		if !ok {
			return nil, errors.New("enum counter: " + v.Name + " lacks the CNT_ prefix")
		}
		out[v.Value] = strings.ToLower(name)
	}
	return out, nil
}
