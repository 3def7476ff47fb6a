package bpfobj

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/braid-cni/braid/internal/testenv"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

type testObjs struct {
	testProgs
	testMaps
}

type testProgs struct {
	Prog *ebpf.Program `ebpf:"prog"`
}

type testMaps struct {
	Counters *ebpf.Map `ebpf:"counters"`
}

func (o *testObjs) Close() { o.Prog.Close(); o.Counters.Close() }

func testSpec() (*ebpf.CollectionSpec, error) {
	return &ebpf.CollectionSpec{
		Maps: map[string]*ebpf.MapSpec{
			"counters": {Name: "counters", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1, Pinning: ebpf.PinByName},
		},
		Programs: map[string]*ebpf.ProgramSpec{
			"prog": {Name: "prog", Type: ebpf.SchedCLS, License: "GPL", Instructions: asm.Instructions{
				asm.LoadMapPtr(asm.R1, 0).WithReference("counters"),
				asm.Mov.Imm(asm.R0, -1),
				asm.Return(),
			}},
		},
	}, nil
}

func progID(t *testing.T, p *ebpf.Program) ebpf.ProgramID {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return id
}

func loadTest(t *testing.T, root string) ebpf.ProgramID {
	t.Helper()
	var objs testObjs
	eps, err := Load(root, "test", testSpec, &objs)
	if err != nil {
		t.Fatal(err)
	}
	defer eps.Close()
	defer objs.Close()
	return progID(t, objs.Prog)
}

// The second call reuses the verified program from its pin; once the map it
// references is recreated, the pin is stale and the program is loaded anew.
func TestProgramsReusedWhileMapsCurrent(t *testing.T) {
	testenv.RequireRoot(t)
	root := testenv.BPFFS(t)
	first := loadTest(t, root)
	if again := loadTest(t, root); again != first {
		t.Fatalf("second load got program %d, want the pinned %d", again, first)
	}
	pins, _ := filepath.Glob(filepath.Join(root, "test", "progs", "prog@*"))
	if len(pins) != 1 {
		t.Fatalf("program pins %v, want one", pins)
	}
	if err := os.Remove(filepath.Join(root, "test", "counters")); err != nil {
		t.Fatal(err)
	}
	if fresh := loadTest(t, root); fresh == first {
		t.Fatal("program reused although its map was recreated")
	}
	if pins, _ = filepath.Glob(filepath.Join(root, "test", "progs", "prog@*")); len(pins) != 1 {
		t.Fatalf("program pins after reload %v, want one", pins)
	}
}
