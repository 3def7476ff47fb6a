package harness

// Counters by name: each plugin names its counter indexes in
// plugins/<plugin>/counters.go (`var counterNames`, checked against the
// C enum by the plugin's own tests). Plugins are main packages, so the
// suites read that declaration from the source instead of importing it.

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var counterNamesCache sync.Map // plugin -> []string

// CounterNames are plugin's counter names, index by index.
func CounterNames(t testing.TB, plugin string) []string {
	t.Helper()
	if v, ok := counterNamesCache.Load(plugin); ok {
		return v.([]string)
	}
	repo, err := Repo()
	if err != nil {
		t.Fatal(err)
	}
	names, err := parseCounterNames(filepath.Join(repo, "plugins", plugin, "counters.go"))
	if err != nil {
		t.Fatalf("counter names of %s: %v", plugin, err)
	}
	counterNamesCache.Store(plugin, names)
	return names
}

// parseCounterNames evaluates `var counterNames = []string{...}`, whose
// elements are string literals, optionally keyed by constants of the same
// file declared with iota in one const block.
func parseCounterNames(path string) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		return nil, err
	}
	consts := map[string]int{}
	var lit *ast.CompositeLit
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok {
			continue
		}
		for i, s := range g.Specs {
			v := s.(*ast.ValueSpec)
			for _, n := range v.Names {
				if g.Tok == token.CONST {
					consts[n.Name] = i // iota: the spec's position in the block
				}
				if g.Tok == token.VAR && n.Name == "counterNames" && len(v.Values) == 1 {
					lit, _ = v.Values[0].(*ast.CompositeLit)
				}
			}
		}
	}
	if lit == nil {
		return nil, fmt.Errorf("%s: no `var counterNames = []string{...}`", path)
	}
	byIndex := map[int]string{}
	for i, e := range lit.Elts {
		idx := i
		if kv, ok := e.(*ast.KeyValueExpr); ok {
			id, ok := kv.Key.(*ast.Ident)
			c, known := consts[id.Name]
			if !ok || !known {
				return nil, fmt.Errorf("%s: counterNames key %v is not a constant of the file", path, kv.Key)
			}
			idx, e = c, kv.Value
		}
		bl, ok := e.(*ast.BasicLit)
		if !ok || bl.Kind != token.STRING {
			return nil, fmt.Errorf("%s: counterNames element %d is not a string literal", path, i)
		}
		s, err := strconv.Unquote(bl.Value)
		if err != nil {
			return nil, err
		}
		byIndex[idx] = s
	}
	names := make([]string, len(byIndex))
	for i, s := range byIndex {
		if i >= len(names) {
			return nil, fmt.Errorf("%s: counterNames has a gap before index %d", path, i)
		}
		names[i] = s
	}
	return names, nil
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
