package socklb

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/sockprobe"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
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

// TestAddSyncsServices: a CNI ADD alone, no braid sync, writes the store's
// services into sock-lb's maps, and the next connect to the VIP is balanced.
func TestAddSyncsServices(t *testing.T) {
	n := harness.New(t).AddNode(t)
	c := n.Conflist(t, "native-lb.conflist", n.SockLB(t, nil))
	b := serve(t, c.AddPod(t, "b"))
	apply(t, n, service("web", vipWeb, store.TCP, b.tcp)) // the store only
	if k := entries(t, n, "lb_services"); k != 0 {
		t.Fatalf("lb_services has %d entries before any ADD after the service was added", k)
	}
	client := c.AddPod(t, "client")
	if k := entries(t, n, "lb_services"); k != 1 {
		t.Errorf("lb_services has %d entries after the ADD, want web's", k)
	}
	if k := entries(t, n, "lb_backends"); k != 1 {
		t.Errorf("lb_backends has %d entries after the ADD, want web's one backend", k)
	}
	r := one(t, n.Probe(t, client.NS), sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb})
	if r.Err != "" || r.Reply != "b" || r.Peer != vipWeb {
		t.Errorf("connect to %s after the ADD: %+v, want b answering as the VIP", vipWeb, r)
	}
}

// TestOneProgramPerHook: ADDs (in turn and at once), STATUS and braid sync
// each reconcile the cgroup hooks; after many, each hook of the cgroup runs
// exactly one program, the pinned link's (a link attached again instead of
// updated would leave the old one running beside it).
func TestOneProgramPerHook(t *testing.T) {
	n := harness.New(t).AddNode(t)
	c := n.Conflist(t, "native-lb.conflist", n.SockLB(t, nil), harness.CNIVersion("1.1.0"))
	for i := range 4 {
		c.AddPod(t, fmt.Sprintf("p%d", i))
	}
	var wg sync.WaitGroup
	pods := make([]*harness.Pod, 4)
	for i := range pods {
		pods[i] = c.NewPod(t, fmt.Sprintf("q%d", i))
	}
	errs := make([]error, len(pods))
	for i, p := range pods {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = p.Add() }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("parallel ADD %s: %v", pods[i].Name, err)
		}
	}
	if err := c.Status(); err != nil {
		t.Fatalf("STATUS: %v", err)
	}
	c.RequireSync(t)
	cg, err := os.Open(n.Cgroup(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	for h, attach := range map[string]ebpf.AttachType{
		"connect4": ebpf.AttachCGroupInet4Connect, "sendmsg4": ebpf.AttachCGroupUDP4Sendmsg,
		"recvmsg4": ebpf.AttachCGroupUDP4Recvmsg, "getpeername4": ebpf.AttachCgroupInet4GetPeername,
	} {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(cg.Fd()), Attach: attach})
		if err != nil {
			t.Fatalf("query %s: %v", h, err)
		}
		l, err := link.LoadPinnedLink(n.PinPath(hookPin(h)...), nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Programs) != 1 || res.Programs[0].ID != info.Program {
			t.Errorf("hook %s runs %+v after %d ADDs, STATUS and sync; want only the pinned link's program %d",
				h, res.Programs, 4+len(pods), info.Program)
		}
	}
}

// entries counts the entries of one of sock-lb's pinned maps.
func entries(t *testing.T, n *harness.Node, m string) int {
	t.Helper()
	pinned, err := ebpf.LoadPinnedMap(n.PinPath(plugin, m), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	var k, v []byte
	count := 0
	it := pinned.Iterate()
	for it.Next(&k, &v) {
		count++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return count
}
