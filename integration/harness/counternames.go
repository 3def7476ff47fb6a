package harness

// Counters by name: each plugin's counter names are its enum counter in
// bpf/include/<plugin>_counters.h, read through plugins/counters (the
// suites use its generated constants for indexes).

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/braid-cni/braid/plugins/counters"
)

// CounterNames are plugin's counter names, index by index.
func CounterNames(t testing.TB, plugin string) []string {
	t.Helper()
	names := counters.Names(plugin)
	if names == nil {
		t.Fatalf("plugin %q has no counters (plugins/counters knows %s)", plugin, strings.Join(counters.Plugins(), ", "))
	}
	return names
}

// CounterSet is a snapshot of one plugin's counters on one node.
type CounterSet struct {
	Plugin string
	Names  []string
	Values []uint64
}

// CounterSet reads plugin's counters on the node, with their names.
func (n *Node) CounterSet(t testing.TB, plugin string) CounterSet {
	t.Helper()
	return CounterSet{Plugin: plugin, Names: CounterNames(t, plugin), Values: n.Counters(t, plugin)}
}

// Get is the value of the counter called name; an unknown name fails t.
func (s CounterSet) Get(t testing.TB, name string) uint64 {
	t.Helper()
	for i, n := range s.Names {
		if n == name {
			return s.Values[i]
		}
	}
	t.Fatalf("%s has no counter %q (it has %s)", s.Plugin, name, strings.Join(s.Names, ", "))
	return 0
}

// Since is what rose between before and s, by name, only counters that
// moved.
func (s CounterSet) Since(before CounterSet) map[string]uint64 {
	out := map[string]uint64{}
	for i, v := range s.Values {
		if i < len(before.Values) && v != before.Values[i] {
			name := fmt.Sprint(i)
			if i < len(s.Names) {
				name = s.Names[i]
			}
			out[name] = v - before.Values[i]
		}
	}
	return out
}

// Delta is how much the counter called name rose since before.
func (s CounterSet) Delta(t testing.TB, before CounterSet, name string) uint64 {
	t.Helper()
	return s.Get(t, name) - before.Get(t, name)
}

// FormatDeltas renders Since's result in a stable order, for messages.
func FormatDeltas(d map[string]uint64) string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s+%d", k, d[k])
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, " ")
}
