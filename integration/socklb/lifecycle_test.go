package socklb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/sockprobe"
	"github.com/cilium/ebpf"
)

// TestCheckStatusGC: one node, a client and a backend pod. CHECK names a
// missing cgroup attachment and a missing service entry; STATUS, GC and
// braid sync put them back; GC keeps the node-wide links and follows the
// store's services.
func TestCheckStatusGC(t *testing.T) {
	n := harness.New(t).AddNode(t)
	c := n.Conflist(t, "native-lb.conflist", n.SockLB(t, nil), harness.CNIVersion("1.1.0"))
	client := c.AddPod(t, "client")
	b := serve(t, c.AddPod(t, "b"))
	apply(t, n, service("web", vipWeb, store.TCP, b.tcp))
	c.RequireSync(t)
	p := n.Probe(t, client.NS)
	balanced := func(t *testing.T) bool {
		t.Helper()
		r := one(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb})
		return r.Err == "" && r.Reply == "b" && r.Peer == vipWeb
	}
	requireHooks := func(t *testing.T) {
		t.Helper()
		for _, h := range hooks {
			if _, err := os.Stat(n.PinPath(hookPin(h)...)); err != nil {
				t.Errorf("cgroup hook %s: %v", h, err)
			}
		}
	}

	if err := client.Check(); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if !balanced(t) {
		t.Fatal("not balanced to begin with")
	}

	t.Run("CHECK names a missing cgroup attachment", func(t *testing.T) {
		for _, h := range hooks {
			n.RemovePin(t, hookPin(h)...)
			requireMentions(t, client.Check(), "sock-lb CHECK", "cgroup attachment "+h, "missing", n.PinPath(hookPin(h)...))
			if h == "connect4" && balanced(t) {
				t.Error("still balanced with the connect4 link unpinned (removing the pin must detach it)")
			}
			// STATUS reconciles: the attachment is back.
			if err := c.Status(); err != nil {
				t.Fatalf("STATUS: %v", err)
			}
			if err := client.Check(); err != nil {
				t.Fatalf("CHECK after STATUS: %v", err)
			}
		}
		if !balanced(t) {
			t.Error("not balanced after STATUS")
		}
	})

	t.Run("CHECK names a missing service entry", func(t *testing.T) {
		m, err := ebpf.LoadPinnedMap(n.PinPath(plugin, "lb_services"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		var k, v []byte
		it := m.Iterate()
		if !it.Next(&k, &v) {
			t.Fatalf("service map empty: %v", it.Err())
		}
		if err := m.Delete(k); err != nil {
			t.Fatal(err)
		}
		requireMentions(t, client.Check(), "service web", "not in the service map")
		if err := c.GC(client, b.Pod); err != nil {
			t.Fatalf("GC: %v", err)
		}
		if err := client.Check(); err != nil {
			t.Fatalf("CHECK after GC: %v", err)
		}
		requireHooks(t)
		if !balanced(t) {
			t.Error("not balanced after GC")
		}
	})

	t.Run("braid sync restores every hook", func(t *testing.T) {
		for _, h := range hooks {
			n.RemovePin(t, hookPin(h)...)
		}
		out := c.RequireSync(t)
		for _, h := range hooks {
			if !strings.Contains(string(out), "cgroup hook "+h+" attached") {
				t.Errorf("braid sync output does not report hook %s:\n%s", h, out)
			}
		}
		requireHooks(t)
		if !balanced(t) {
			t.Error("not balanced after braid sync")
		}
	})

	t.Run("GC follows the store's services", func(t *testing.T) {
		n.Braid(t, "service", "del", "web")
		if err := c.GC(client, b.Pod); err != nil {
			t.Fatalf("GC: %v", err)
		}
		m, err := ebpf.LoadPinnedMap(n.PinPath(plugin, "lb_services"), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		var k, v []byte
		if it := m.Iterate(); it.Next(&k, &v) {
			t.Errorf("service map still has an entry after web's removal and GC")
		}
		if r := one(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb}); r.Err == "" {
			t.Errorf("connect to the removed %s: %+v, want a failure (untouched, no route)", vipWeb, r)
		}
		requireHooks(t)
		if err := client.Check(); err != nil {
			t.Errorf("CHECK: %v", err)
		}
	})

	t.Run("DEL keeps the node-wide hooks", func(t *testing.T) {
		for _, pod := range []*harness.Pod{client, b.Pod} {
			if err := pod.Del(); err != nil {
				t.Fatalf("DEL %s: %v", pod.Name, err)
			}
		}
		requireHooks(t)
		if err := c.GC(); err != nil {
			t.Fatalf("GC with no pod: %v", err)
		}
		requireHooks(t)
		left, err := filepath.Glob(n.PinPath(plugin, "links", "*"))
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != len(hooks) {
			t.Errorf("sock-lb pins after every pod left: %v, want the %d hooks only", left, len(hooks))
		}
	})
}
