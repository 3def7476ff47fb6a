package faults

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/containernetworking/cni/pkg/types"
)

// A store locked by a stuck process (CNI error 11, then success once it is
// free) is covered by integration/vethebpf TestConfigErrors, "store locked
// by another process".

// TestDamagedStore damages the node store under two running pods in the
// ways a disk or an operator can (truncated, zeroed, overwritten), then
// checks that every CNI call and braid command refuses with a clear error
// naming `braid node rebuild`; that the rebuild recovers both pods from
// kernel state; and that afterwards the pods still talk, DEL and ADD work
// and nothing leaks.
func TestDamagedStore(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"truncated to zero", func([]byte) []byte { return nil }},
		{"truncated to one page", func(b []byte) []byte { return b[:4096] }},
		{"truncated to two pages", func(b []byte) []byte { return b[:8192] }},
		{"pages zeroed", func(b []byte) []byte {
			clear(b[8192:])
			return b
		}},
		{"meta pages overwritten", func(b []byte) []byte {
			for i := range 128 {
				b[16+i], b[4096+16+i] = 0xa5, 0x5a
			}
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := harness.New(t).AddNode(t)
			c := n.Conflist(t, "node-local.conflist", harness.CNIVersion("1.1.0"))
			a, b := c.AddPod(t, "a"), c.AddPod(t, "b")
			pingBoth(t, a, b)

			path := filepath.Join(n.StateDir, "braid.db")
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.damage(raw), 0o600); err != nil {
				t.Fatal(err)
			}

			// Every verb refuses, and says how to recover.
			fresh := c.NewPod(t, "fresh")
			harness.RequireCNIError(t, fresh.Add(), types.ErrIOFailure, "braid node rebuild")
			harness.RequireCNIError(t, a.Del(), types.ErrIOFailure, "braid node rebuild")
			harness.RequireCNIError(t, a.Check(), types.ErrIOFailure, "braid node rebuild")
			harness.RequireCNIError(t, c.GC(a, b), types.ErrIOFailure, "braid node rebuild")
			if out, err := n.TryBraid(t, "status"); err == nil || !strings.Contains(err.Error(), "braid node rebuild") {
				t.Errorf("braid status on a damaged store: %v\n%s", err, out)
			}
			// The datapath is untouched by a store that cannot be read.
			pingBoth(t, a, b)

			out := n.Braid(t, append([]string{"node", "rebuild", "--name", n.Name, "--node-ip", n.IP.String(),
				"--pod-cidr", n.PodCIDR.String(), "--device", harness.NodeDevice}, c.ConflistFlags(t)...)...)
			if !strings.Contains(string(out), "with 2 endpoints") {
				t.Errorf("braid node rebuild: %s", out)
			}
			var eps []struct {
				ContainerID string `json:"containerID"`
			}
			n.BraidJSON(t, &eps, "endpoint", "list")
			ids := []string{}
			for _, e := range eps {
				ids = append(ids, e.ContainerID)
			}
			slices.Sort(ids)
			if want := []string{a.ContainerID, b.ContainerID}; !slices.Equal(ids, want) {
				t.Errorf("endpoints after rebuild %v, want %v", ids, want)
			}
			c.RequireSync(t)
			n.RequireNoLeaks(t, a, b)
			for _, p := range []*harness.Pod{a, b} {
				if err := p.Check(); err != nil {
					t.Errorf("CHECK of %s after rebuild: %v", p.Name, err)
				}
			}
			pingBoth(t, a, b)

			// DEL and ADD work again; the new pod does not get a rebuilt
			// pod's address.
			if err := a.Del(); err != nil {
				t.Fatalf("DEL after rebuild: %v", err)
			}
			if err := fresh.Add(); err != nil {
				t.Fatalf("ADD after rebuild: %v", err)
			}
			if fresh.IP == b.IP {
				t.Errorf("the new pod got %s, which the rebuilt pod b holds", b.IP)
			}
			pingBoth(t, fresh, b)
			if err := c.GC(fresh, b); err != nil {
				t.Errorf("GC after rebuild: %v", err)
			}
			n.RequireNoLeaks(t, fresh, b)
			for _, p := range []*harness.Pod{fresh, b} {
				if err := p.Del(); err != nil {
					t.Fatal(err)
				}
			}
			n.RequireClean(t)
		})
	}
}
