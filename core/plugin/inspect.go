package plugin

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/braid-cni/braid/core/bpffs"
	"github.com/braid-cni/braid/core/datapathrpc"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/tcx"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// countersPin is the plugin's per-CPU counters map (bpf/include/counters.h).
const countersPin = maps.CountersPin

// inspection is what a plugin has on the node, found from its pins alone:
// every plugin keeps its private maps in <bpfRoot>/<plugin>/ and its links in
// <bpfRoot>/<plugin>/links/, so no plugin needs code of its own for Info and
// Status.
type inspection struct {
	programs    []*datapathrpc.Program
	maps        []*datapathrpc.Map
	attachments []*datapathrpc.Attachment
	counters    []*datapathrpc.Counter
	problems    []string
}

// first (may be nil) tells the pins of links whose program must run first
// on its hook; one that does not is a problem.
func inspect(bpfRoot, plugin string, counterNames []string, first func(pin string) bool) *inspection {
	in := &inspection{}
	in.inspectMaps(bpfRoot, plugin)
	in.inspectLinks(bpfRoot, plugin, first)
	in.readCounters(filepath.Join(bpfRoot, plugin, countersPin), counterNames)
	return in
}

func (in *inspection) problem(format string, a ...any) {
	in.problems = append(in.problems, fmt.Sprintf(format, a...))
}

// inspectMaps lists the shared endpoint map and the plugin's own pinned
// maps with their fill.
func (in *inspection) inspectMaps(bpfRoot, plugin string) {
	paths := []string{filepath.Join(bpfRoot, maps.EndpointsPin)}
	entries, err := os.ReadDir(filepath.Join(bpfRoot, plugin))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		in.problem("%v", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			paths = append(paths, filepath.Join(bpfRoot, plugin, e.Name()))
		}
	}
	for _, p := range paths {
		m, err := ebpf.LoadPinnedMap(p, &ebpf.LoadPinOptions{ReadOnly: true})
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		rel, _ := filepath.Rel(bpfRoot, p)
		if err != nil {
			in.problem("map %s: %v", rel, err)
			continue
		}
		n, err := countEntries(m)
		if err != nil {
			in.problem("map %s: %v", rel, err)
		}
		in.maps = append(in.maps, &datapathrpc.Map{Name: rel, Type: m.Type().String(), Entries: n, MaxEntries: uint64(m.MaxEntries())})
		m.Close()
	}
}

// countEntries counts a map's keys; an array always holds max_entries.
func countEntries(m *ebpf.Map) (uint64, error) {
	switch m.Type() {
	case ebpf.Array, ebpf.PerCPUArray:
		return uint64(m.MaxEntries()), nil
	}
	var n uint64
	var key any // nil asks for the first key
	for {
		next, err := m.NextKeyBytes(key)
		if err != nil || next == nil {
			return n, err
		}
		n++
		key = next
	}
}

// inspectLinks lists the plugin's pinned links, where each is attached and
// the programs they hold.
func (in *inspection) inspectLinks(bpfRoot, plugin string, first func(pin string) bool) {
	pins, err := bpffs.LinkPins(bpfRoot, plugin)
	if err != nil {
		in.problem("%v", err)
	}
	seen := map[ebpf.ProgramID]bool{}
	for _, pin := range pins {
		a := &datapathrpc.Attachment{Pin: pin}
		in.attachments = append(in.attachments, a)
		l, err := link.LoadPinnedLink(bpffs.LinkPin(bpfRoot, plugin, pin), nil)
		if err != nil {
			in.problem("link %s: %v", pin, err)
			continue
		}
		info, err := l.Info()
		if err == nil && first != nil && first(pin) {
			in.checkFirst(pin, l, info)
		}
		l.Close()
		if err != nil {
			in.problem("link %s: %v", pin, err)
			continue
		}
		a.Type = strings.ToLower(strings.TrimSuffix(fmt.Sprint(info.Type), "Type"))
		a.Target, a.Present = target(info)
		if !a.Present {
			in.problem("link %s: its target is gone (run GC)", pin)
		}
		prog, err := ebpf.NewProgramFromID(info.Program)
		if err != nil {
			continue // detached links hold no program any more
		}
		if pi, err := prog.Info(); err == nil {
			a.Program = pi.Name
			if !seen[info.Program] {
				seen[info.Program] = true
				in.programs = append(in.programs, &datapathrpc.Program{Name: pi.Name, Type: pi.Type.String(), Id: uint32(info.Program)})
			}
		}
		prog.Close()
	}
	sort.Slice(in.programs, func(i, j int) bool { return in.programs[i].Name < in.programs[j].Name })
}

// checkFirst reports a tcx link whose program another one runs ahead of.
func (in *inspection) checkFirst(pin string, l link.Link, info *link.Info) {
	t := info.TCX()
	if t == nil || t.Ifindex == 0 {
		return
	}
	if err := tcx.First(l, int(t.Ifindex), ebpf.AttachType(t.AttachType)); err != nil {
		in.problem("link %s must run first: %v (run braid sync)", pin, err)
	}
}

// target says where a link is attached, and whether that still exists: a
// tcx link of a deleted interface reports ifindex 0.
func target(info *link.Info) (string, bool) {
	if t := info.TCX(); t != nil {
		if t.Ifindex == 0 {
			return "", false
		}
		ifc, err := net.InterfaceByIndex(int(t.Ifindex))
		if err != nil {
			return fmt.Sprintf("ifindex %d", t.Ifindex), false
		}
		return ifc.Name, true
	}
	if c := info.Cgroup(); c != nil {
		return fmt.Sprintf("cgroup %d", c.CgroupId), c.CgroupId != 0
	}
	return "", true
}

// readCounters sums the per-CPU counters: every named index, and any other
// that counted something.
func (in *inspection) readCounters(pin string, names []string) {
	values, err := maps.PinnedCounters(pin)
	if errors.Is(err, os.ErrNotExist) {
		return // no program has run yet
	}
	if err != nil {
		in.problem("counters: %v", err)
		return
	}
	for i, v := range values {
		c := &datapathrpc.Counter{Index: uint32(i), Value: v}
		if i < len(names) {
			c.Name = names[i]
			c.Drop = strings.HasPrefix(c.Name, "drop")
		}
		if c.Name != "" || v != 0 {
			in.counters = append(in.counters, c)
		}
	}
}
