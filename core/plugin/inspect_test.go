package plugin

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/internal/testenv"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Info and Status are built from the pins alone: maps with their fill, the
// shared endpoint map, and counters by name.
func TestInspectPins(t *testing.T) {
	root := testenv.BPFFS(t)
	if err := os.MkdirAll(filepath.Join(root, "p", "links"), 0o700); err != nil {
		t.Fatal(err)
	}
	eps, err := maps.OpenEndpoints(root)
	if err != nil {
		t.Fatal(err)
	}
	defer eps.Close()
	hash, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer hash.Close()
	for k := range uint32(3) {
		if err := hash.Put(k, k); err != nil {
			t.Fatal(err)
		}
	}
	counters, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer counters.Close()
	perCPU := make([]uint64, ebpf.MustPossibleCPU())
	perCPU[0] = 5
	if err := counters.Put(uint32(1), perCPU); err != nil {
		t.Fatal(err)
	}
	perCPU[0] = 7
	if err := counters.Put(uint32(3), perCPU); err != nil {
		t.Fatal(err)
	}
	if err := hash.Pin(filepath.Join(root, "p", "things")); err != nil {
		t.Fatal(err)
	}
	if err := counters.Pin(filepath.Join(root, "p", countersPin)); err != nil {
		t.Fatal(err)
	}

	in := inspect(root, "p", []string{"ok", "passed", "drop_bad"}, nil)
	if len(in.problems) != 0 {
		t.Errorf("problems: %v", in.problems)
	}
	fill := map[string][2]uint64{}
	for _, m := range in.maps {
		fill[m.Name] = [2]uint64{m.Entries, m.MaxEntries}
	}
	want := map[string][2]uint64{"endpoints": {0, maps.EndpointsMax}, "p/things": {3, 16}, "p/counters": {4, 4}}
	for name, w := range want {
		if fill[name] != w {
			t.Errorf("map %s: entries/max = %v, want %v (all: %v)", name, fill[name], w, fill)
		}
	}
	got := map[string]uint64{}
	for _, c := range in.counters {
		got[c.Name] = c.Value
		if c.Drop != (c.Name == "drop_bad") {
			t.Errorf("counter %q drop = %v", c.Name, c.Drop)
		}
	}
	// Named ones always, unnamed ones (index 3) when they counted.
	if len(in.counters) != 4 || got["passed"] != 5 || got["ok"] != 0 || got[""] != 7 {
		t.Errorf("counters = %v", in.counters)
	}
}

// A pinned tcx link shows as an attachment on its interface with its
// program, and as absent once the link lost its target.
func TestInspectLinks(t *testing.T) {
	root := testenv.BPFFS(t)
	errc := make(chan error, 1)
	go func() {
		// A throwaway thread in a netns of its own: never unlocked, so the
		// runtime discards it when this goroutine ends.
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return err
			}
			prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "pass_next", Type: ebpf.SchedCLS, License: "GPL",
				Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}})
			if err != nil {
				return err
			}
			defer prog.Close()
			if err := os.MkdirAll(filepath.Join(root, "p", "links"), 0o700); err != nil {
				return err
			}
			l, err := link.AttachTCX(link.TCXOptions{Interface: 1, Program: prog, Attach: ebpf.AttachTCXIngress})
			if err != nil {
				return err
			}
			defer l.Close()
			if err := l.Pin(filepath.Join(root, "p", "links", "lo_ingress")); err != nil {
				return err
			}
			in := inspect(root, "p", nil, nil)
			if len(in.attachments) != 1 || !in.attachments[0].Present || in.attachments[0].Target != "lo" || in.attachments[0].Program != "pass_next" {
				return fmt.Errorf("attachments = %v, problems %v", in.attachments, in.problems)
			}
			if len(in.programs) != 1 || in.programs[0].Name != "pass_next" {
				return fmt.Errorf("programs = %v, problems %v", in.programs, in.problems)
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// A link that must run first (WithFirst) is a problem when another program
// runs ahead of it on its hook, and none when it is first.
func TestInspectFirst(t *testing.T) {
	root := testenv.BPFFS(t)
	errc := make(chan error, 1)
	go func() {
		// A throwaway thread in a netns of its own, as in TestInspectLinks.
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return err
			}
			newProg := func(name string) (*ebpf.Program, error) {
				return ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: ebpf.SchedCLS, License: "GPL",
					Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}})
			}
			mine, err := newProg("mine")
			if err != nil {
				return err
			}
			defer mine.Close()
			other, err := newProg("other")
			if err != nil {
				return err
			}
			defer other.Close()
			if err := os.MkdirAll(filepath.Join(root, "p", "links"), 0o700); err != nil {
				return err
			}
			l, err := link.AttachTCX(link.TCXOptions{Interface: 1, Program: mine, Attach: ebpf.AttachTCXIngress})
			if err != nil {
				return err
			}
			defer l.Close()
			if err := l.Pin(filepath.Join(root, "p", "links", "lo_ingress")); err != nil {
				return err
			}
			first := func(pin string) bool { return pin == "lo_ingress" }
			if in := inspect(root, "p", nil, first); len(in.problems) != 0 {
				return fmt.Errorf("alone on the hook: problems %v", in.problems)
			}
			ahead, err := link.AttachTCX(link.TCXOptions{Interface: 1, Program: other, Attach: ebpf.AttachTCXIngress, Anchor: link.Head()})
			if err != nil {
				return err
			}
			defer ahead.Close()
			in := inspect(root, "p", nil, first)
			if len(in.problems) != 1 || !strings.Contains(in.problems[0], "lo_ingress must run first") || !strings.Contains(in.problems[0], "(other)") {
				return fmt.Errorf("another program first: problems %v", in.problems)
			}
			if in := inspect(root, "p", nil, nil); len(in.problems) != 0 {
				return fmt.Errorf("without WithFirst: problems %v", in.problems)
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
