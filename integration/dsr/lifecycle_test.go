package dsr

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/integration/harness"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// TestCheckStatusGC: node 1 of a native cluster serves a node port from a
// pod of its own. CHECK names what was removed by hand (the node device's
// link, the node-port entry, the Maglev table, the trusted nodes, the
// settings); STATUS or braid sync puts it back, dsr's node-device program
// again ahead of native-route's; GC drops a deleted service's table; DEL
// removes the pod's pin, and again is no error.
func TestCheckStatusGC(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nativeConflist, harness.CNIVersion("1.1.0")) // GC and STATUS
	n, ch := c.node(1), c.chain(1)
	web := c.backend(t, 1, "web")
	c.nodePort(t, "web", []string{"tcp"}, 30080, "", web)
	served := func(t *testing.T) bool {
		t.Helper()
		a, err := (request{proto: "tcp", timeout: time.Second}).do(c.client, netip.AddrPortFrom(n.IP, 30080))
		return err == nil && a.backend == "web"
	}
	check := func(t *testing.T) {
		t.Helper()
		if err := web.Check(); err != nil {
			t.Fatalf("CHECK: %v", err)
		}
	}
	devPin := []string{"dsr", "links", "dev-" + harness.NodeDevice + "_ingress"}
	check(t)
	requireDSRFirst(t, n, devPin)
	if !served(t) {
		t.Fatal("node port not served to begin with")
	}

	t.Run("node device link: CHECK names it, STATUS puts it back first", func(t *testing.T) {
		n.RemovePin(t, devPin...)
		harness.RequireCNIError(t, web.Check(), 999, "dsr CHECK", "no link pinned at "+n.PinPath(devPin...))
		if err := ch.Status(); err != nil {
			t.Fatalf("STATUS: %v", err)
		}
		check(t)
		// Re-created after native-route's program, it would come second,
		// and native-route would deliver the option-carrying SYNs itself.
		requireDSRFirst(t, n, devPin)
		if !served(t) {
			t.Error("not served after STATUS")
		}
	})

	t.Run("a link left behind native-route's goes back to the head", func(t *testing.T) {
		// As an older build's repair left it: dsr's program attached last.
		moveToTail(t, n, devPin)
		if progs := n.TCXPrograms(t, harness.NodeDevice, true); len(progs) != 2 || progs[1].ID != linkProgram(t, n, devPin) {
			t.Fatalf("setup: node device runs %+v, want dsr's program last", progs)
		}
		out := ch.RequireSync(t)
		if !bytes.Contains(out, []byte("from_netdev moved ahead of the other programs")) {
			t.Errorf("braid sync does not report the move:\n%s", out)
		}
		requireDSRFirst(t, n, devPin)
		check(t)
		if !served(t) {
			t.Error("not served after braid sync")
		}
	})

	t.Run("node-port entry: CHECK names it, sync puts it back", func(t *testing.T) {
		m := pinnedMap(t, n, "dsr_nodeports")
		deleteFirst(t, m)
		harness.RequireCNIError(t, web.Check(), 999, "node port 30080/tcp of service web-tcp is not in the node-port map")
		if served(t) {
			t.Error("served with its node-port entry gone")
		}
		ch.RequireSync(t)
		check(t)
		if !served(t) {
			t.Error("not served after braid sync")
		}
	})

	t.Run("Maglev table: CHECK names it, STATUS puts it back", func(t *testing.T) {
		m := pinnedMap(t, n, "dsr_maglev")
		deleteFirst(t, m)
		harness.RequireCNIError(t, web.Check(), 999, "service web-tcp", "no Maglev table in dsr_maglev")
		if served(t) {
			t.Error("served with its Maglev table gone")
		}
		if err := ch.Status(); err != nil {
			t.Fatalf("STATUS: %v", err)
		}
		check(t)
		if !served(t) {
			t.Error("not served after STATUS")
		}
	})

	t.Run("trusted nodes: CHECK names a missing and a stranger", func(t *testing.T) {
		m := pinnedMap(t, n, "dsr_nodes")
		deleteFirst(t, m)
		harness.RequireCNIError(t, web.Check(), 999, "dsr_nodes trusts 1 of the cluster's 2 other nodes")
		stranger := netip.MustParseAddr("198.18.0.99").As4()
		if err := m.Put(stranger, uint32(0)); err != nil {
			t.Fatal(err)
		}
		harness.RequireCNIError(t, web.Check(), 999, "dsr_nodes trusts 198.18.0.99, which is not a node of the cluster")
		if err := ch.Status(); err != nil {
			t.Fatalf("STATUS: %v", err)
		}
		check(t)
	})

	t.Run("settings: CHECK names them", func(t *testing.T) {
		m := pinnedMap(t, n, "dsr_settings")
		if err := m.Put(uint32(0), make([]byte, m.ValueSize())); err != nil {
			t.Fatal(err)
		}
		harness.RequireCNIError(t, web.Check(), 999, "dsr_settings does not hold this node's settings")
		if err := ch.Status(); err != nil {
			t.Fatalf("STATUS: %v", err)
		}
		check(t)
		if !served(t) {
			t.Error("not served after STATUS")
		}
	})

	t.Run("GC drops a deleted service's table", func(t *testing.T) {
		n.Braid(t, "service", "del", "web-tcp")
		if err := ch.GC(web); err != nil {
			t.Fatalf("GC: %v", err)
		}
		for _, name := range []string{"dsr_maglev", "dsr_nodeports"} {
			if k := entries(t, pinnedMap(t, n, name)); k != 0 {
				t.Errorf("%s has %d entries after web-tcp's removal and GC", name, k)
			}
		}
		if served(t) {
			t.Error("the removed service is still served")
		}
		check(t)
		requireDSRFirst(t, n, devPin)
	})

	t.Run("DEL removes the pod's pin, twice is fine", func(t *testing.T) {
		pin := n.PinPath("dsr", "links", store.AttachmentID(web.ContainerID, web.IfName)+"_ingress")
		if _, err := os.Stat(pin); err != nil {
			t.Fatalf("pod pin before DEL: %v", err)
		}
		for i := range 2 {
			if err := web.Del(); err != nil {
				t.Fatalf("DEL %d: %v", i+1, err)
			}
			if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after DEL %d: pod pin %s: %v", i+1, pin, err)
			}
		}
		left, err := filepath.Glob(n.PinPath("dsr", "links", "*"))
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 1 || left[0] != n.PinPath(devPin...) {
			t.Errorf("dsr pins after the pod left: %v, want the node device's only", left)
		}
	})
}

// requireDSRFirst fails t unless the program of dsr's link on the node
// device runs first at its ingress, with native-route's after it.
func requireDSRFirst(t *testing.T, n *harness.Node, pin []string) {
	t.Helper()
	id := linkProgram(t, n, pin)
	progs := n.TCXPrograms(t, harness.NodeDevice, true)
	if len(progs) < 2 || progs[0].ID != id {
		t.Fatalf("node device ingress runs %+v; want dsr's program %d first, native-route's after", progs, id)
	}
}

// linkProgram is the program of the link pinned at pin.
func linkProgram(t *testing.T, n *harness.Node, pin []string) ebpf.ProgramID {
	t.Helper()
	l, err := link.LoadPinnedLink(n.PinPath(pin...), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info.Program
}

// moveToTail re-attaches the program of the link pinned at pin after the
// node device's other programs, pinned at the same place.
func moveToTail(t *testing.T, n *harness.Node, pin []string) {
	t.Helper()
	prog, err := ebpf.NewProgramFromID(linkProgram(t, n, pin))
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	// Detached at once: an unpinned link lets go of its program only when
	// the kernel gets to it, and the program cannot be attached twice.
	old, err := link.LoadPinnedLink(n.PinPath(pin...), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = errors.Join(old.Detach(), old.Unpin(), old.Close())
	if err != nil {
		t.Fatal(err)
	}
	err = n.Do(func() error {
		dev, err := net.InterfaceByName(harness.NodeDevice)
		if err != nil {
			return err
		}
		l, err := link.AttachTCX(link.TCXOptions{Interface: dev.Index, Program: prog, Attach: ebpf.AttachTCXIngress, Anchor: link.Tail()})
		if err != nil {
			return err
		}
		defer l.Close()
		return l.Pin(n.PinPath(pin...))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func pinnedMap(t *testing.T, n *harness.Node, name string) *ebpf.Map {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(n.PinPath("dsr", name), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// deleteFirst removes the map's first entry (the test's only one, or any).
func deleteFirst(t *testing.T, m *ebpf.Map) {
	t.Helper()
	key := make([]byte, m.KeySize())
	var val []byte
	if it := m.Iterate(); !it.Next(&key, &val) {
		t.Fatalf("%v is empty: %v", m, it.Err())
	}
	if err := m.Delete(key); err != nil {
		t.Fatal(err)
	}
}

func entries(t *testing.T, m *ebpf.Map) int {
	t.Helper()
	var k, v []byte
	n := 0
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
