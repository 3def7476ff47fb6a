package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTopology checks the harness itself: nodes reach each other over the
// underlay, get their sysctls and bpffs, and teardown leaves nothing.
func TestTopology(t *testing.T) {
	var topo *Topology
	t.Run("two nodes", func(t *testing.T) {
		topo = New(t)
		n1, n2 := topo.AddNode(t), topo.AddNode(t)
		if err := n1.Ping(n2.IP); err != nil {
			t.Error(err)
		}
		n2.RequireTCP(t, n1.NS, n1.IP)
		if got := n1.RequireUDP(t, n2.NS, n2.IP); got.Addr() != n1.IP {
			t.Errorf("n2 saw UDP from %s, want %s", got, n1.IP)
		}
		var fwd []byte
		err := n2.Do(func() (err error) {
			fwd, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
			return err
		})
		if err != nil || strings.TrimSpace(string(fwd)) != "1" {
			t.Errorf("n2 ip_forward = %q (%v), want 1", fwd, err)
		}
		if s := n2.BraidStatus(t); !s.Initialized || !s.BPFFSMounted {
			t.Errorf("braid status on n2: %+v", s)
		}
		n1.RequireClean(t)
	})
	if topo == nil {
		return // skipped
	}
	// The subtest's cleanup has run.
	if left, _ := filepath.Glob(filepath.Join(netnsDir, topo.Name+"-*")); len(left) != 0 {
		t.Errorf("namespaces left after teardown: %v", left)
	}
	if mounts, _ := mountsUnder(topo.Dir); len(mounts) != 0 {
		t.Errorf("mounts left after teardown: %v", mounts)
	}
	if _, err := os.Stat(topo.Dir); !os.IsNotExist(err) {
		t.Errorf("%s left after teardown (%v)", topo.Dir, err)
	}
}
