package faults

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"

	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/integration/harness"
	"github.com/cilium/ebpf"
	"github.com/containernetworking/cni/pkg/types"
)

// TestPoolExhaustion gives the node a /29 (five addresses for pods: the
// network, gateway and broadcast addresses are never handed out) and
// races eight ADDs for them: five pods get an address, three get CNI error
// 11 naming the exhausted CIDR, and a failed ADD leaves nothing behind, on
// the node or in the pod. A DEL frees an address for the next ADD.
func TestPoolExhaustion(t *testing.T) {
	n := harness.New(t).AddNode(t)
	small := netip.MustParsePrefix("198.19.1.0/29")
	n.Braid(t, "node", "init", "--name", n.Name, "--node-ip", n.IP.String(),
		"--pod-cidr", small.String(), "--device", harness.NodeDevice)
	c := n.Conflist(t, "node-local.conflist", harness.CNIVersion("1.1.0"))

	pods := make([]*harness.Pod, 8)
	for i := range pods {
		pods[i] = c.NewPod(t, fmt.Sprintf("p%d", i))
	}
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Go(func() { errs[i] = p.Add() })
	}
	wg.Wait()
	var added, refused []*harness.Pod
	for i, err := range errs {
		if err == nil {
			added = append(added, pods[i])
			continue
		}
		harness.RequireCNIError(t, err, types.ErrTryAgainLater, small.String(), "exhausted")
		refused = append(refused, pods[i])
	}
	if len(added) != 5 {
		t.Fatalf("%d ADDs succeeded on a /29, want 5", len(added))
	}
	for _, p := range added {
		if !small.Contains(p.IP) || p.IP == netip.MustParseAddr("198.19.1.1") {
			t.Errorf("%s got %s", p.Name, p.IP)
		}
	}
	n.RequireNoLeaks(t, added...)
	for _, p := range refused {
		requireNoPodInterface(t, p)
	}
	pingBoth(t, added[0], added[4])

	// One more, sequentially: refused the same way.
	harness.RequireCNIError(t, refused[0].Add(), types.ErrTryAgainLater, "exhausted")
	n.RequireNoLeaks(t, added...)

	// A DEL frees an address; the refused pod gets it.
	freed := added[2].IP
	if err := added[2].Del(); err != nil {
		t.Fatal(err)
	}
	if err := refused[0].Add(); err != nil {
		t.Fatalf("ADD after a DEL freed an address: %v", err)
	}
	if refused[0].IP != freed {
		t.Errorf("the new pod got %s, the only free address is %s", refused[0].IP, freed)
	}
	pingBoth(t, refused[0], added[0])
	for _, p := range append([]*harness.Pod{refused[0]}, added...) {
		if err := p.Del(); err != nil {
			t.Fatal(err)
		}
	}
	n.RequireClean(t)
	t.Logf("FIGURE pool exhaustion: /29, 8 parallel ADDs: 5 added, 3 refused with CNI 11; leaks found: 0")
}

// TestEndpointMapFull fills the node's endpoint map to its 65536 entries
// and adds a pod: the ADD fails with an error naming the full map and
// leaves nothing behind; GC then drops the entries no endpoint owns, and
// the pod is added.
func TestEndpointMapFull(t *testing.T) {
	n := harness.New(t).AddNode(t)
	c := n.Conflist(t, "node-local.conflist", harness.CNIVersion("1.1.0"))
	a := c.AddPod(t, "a")

	m, err := ebpf.LoadPinnedMap(filepath.Join(n.BPFRoot, maps.EndpointsPin), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// Filler entries for addresses outside the node's pod CIDR (an entry
	// for the new pod's own address would be an update, which fits).
	var keys [][4]byte
	var vals []maps.EndpointInfo
	for ip := netip.MustParseAddr("198.18.1.0"); len(keys) < maps.EndpointsMax-1; ip = ip.Next() {
		if !n.PodCIDR.Contains(ip) {
			keys = append(keys, ip.As4())
			vals = append(vals, maps.EndpointInfo{Ifindex: 999999, ID: 1 << 30})
		}
	}
	if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
		t.Fatalf("fill the endpoint map: %v", err)
	}

	b := c.NewPod(t, "b")
	err = b.Add()
	var cniErr *types.Error
	if !errors.As(err, &cniErr) {
		t.Fatalf("ADD with a full endpoint map: %v, want a CNI error", err)
	}
	harness.RequireCNIError(t, err, cniErr.Code, "endpoint map", "full", fmt.Sprint(maps.EndpointsMax))
	if cniErr.Code != types.ErrTryAgainLater {
		t.Errorf("code %d, want %d (try again: a DEL or GC frees entries)", cniErr.Code, types.ErrTryAgainLater)
	}
	l := n.FindLeaks(t, a)
	if len(l.MapEntries) != len(keys) {
		t.Errorf("endpoint map: %d entries beyond a's, want the %d fillers", len(l.MapEntries), len(keys))
	}
	l.MapEntries, l.Problems = nil, nil // the fillers, and status saying so
	if !l.Empty() {
		t.Errorf("the failed ADD left: %s", l)
	}
	requireNoPodInterface(t, b)

	if err := c.GC(a); err != nil {
		t.Fatalf("GC: %v", err)
	}
	n.RequireNoLeaks(t, a)
	if err := b.Add(); err != nil {
		t.Fatalf("ADD after GC: %v", err)
	}
	pingBoth(t, a, b)
	for _, p := range []*harness.Pod{a, b} {
		if err := p.Del(); err != nil {
			t.Fatal(err)
		}
	}
	n.RequireClean(t)
	t.Logf("FIGURE full endpoint map: %d entries, ADD refused with CNI %d, nothing half-created; GC freed %d entries",
		maps.EndpointsMax, cniErr.Code, len(keys))
}

// requireNoPodInterface checks that a failed ADD left no interface in the
// pod.
func requireNoPodInterface(t *testing.T, p *harness.Pod) {
	t.Helper()
	err := p.Do(func() error {
		_, err := net.InterfaceByName(p.IfName)
		return err
	})
	if err == nil {
		t.Errorf("%s still has %s after its ADD failed", p.Name, p.IfName)
	}
}
