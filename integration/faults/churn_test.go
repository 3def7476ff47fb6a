package faults

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/testenv"
)

// TestChurn keeps BRAID_CHURN_PODS pods on each of two nodes (vxlan) and
// replaces them, BRAID_CHURN_WORKERS at a time per node, for
// BRAID_CHURN_DURATION, while two long-lived pods stream UDP to each other
// across the nodes and every fourth new pod proves it can reach the other
// node. Afterwards every pod is deleted and nothing may be left: no
// endpoint, allocation, endpoint map entry, per-pod pin, host veth, route
// or namespace; a sync finds nothing to change.
func TestChurn(t *testing.T) {
	// The figure by default: 200 pods per node, several minutes.
	perNode := testenv.EnvInt(t, "BRAID_CHURN_PODS", 200)
	duration := testenv.EnvDuration(t, "BRAID_CHURN_DURATION", 3*time.Minute)
	workers := max(1, testenv.EnvInt(t, "BRAID_CHURN_WORKERS", 4))

	cl := twoNodes(t, "vxlan.conflist")
	s1, s2 := cl.c1.AddPod(t, "s1"), cl.c2.AddPod(t, "s2")
	there := s1.StartUDPStream(t, s2.NS, s2.IP, 10*time.Millisecond)
	back := s2.StartUDPStream(t, s1.NS, s1.IP, 10*time.Millisecond)

	type side struct {
		chain  *harness.Chain
		stable *harness.Pod // on this node
		remote *harness.Pod // on the other node
		slots  []*harness.Pod
	}
	sides := []*side{
		{chain: cl.c1, stable: s1, remote: s2, slots: make([]*harness.Pod, perNode)},
		{chain: cl.c2, stable: s2, remote: s1, slots: make([]*harness.Pod, perNode)},
	}

	var mu sync.Mutex
	var errs []string
	var adds, dels, probes int
	var addTimes []time.Duration
	fail := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, fmt.Sprintf(format, a...))
	}
	var gen sync.Map // slot key -> generation
	add := func(s *side, slot int, probe bool) {
		key := fmt.Sprintf("%s/%d", s.chain.Node.Name, slot)
		g, _ := gen.LoadOrStore(key, 0)
		gen.Store(key, g.(int)+1)
		p, err := s.chain.TryNewPod(fmt.Sprintf("c%d-%d", slot, g.(int)))
		if err != nil {
			fail("netns: %v", err)
			return
		}
		start := time.Now()
		if err := p.Add(); err != nil {
			fail("ADD %s: %v", p.Name, err)
			_ = p.Del()
			_ = p.RemoveNetns()
			return
		}
		took := time.Since(start)
		s.slots[slot] = p
		mu.Lock()
		adds++
		addTimes = append(addTimes, took)
		if probe {
			probes++
		}
		mu.Unlock()
		if probe {
			if err := p.Ping(s.remote.IP); err != nil {
				fail("new pod %s cannot reach the other node's pod: %v", p.Name, err)
			}
		}
	}
	del := func(s *side, slot int) {
		p := s.slots[slot]
		if p == nil {
			return
		}
		s.slots[slot] = nil
		if err := p.Del(); err != nil {
			fail("DEL %s: %v", p.Name, err)
		}
		if err := p.RemoveNetns(); err != nil {
			fail("remove netns of %s: %v", p.Name, err)
		}
		mu.Lock()
		dels++
		mu.Unlock()
	}
	// Each worker owns the slots i with i % workers == w, so no two touch
	// the same pod.
	parallel := func(fn func(s *side, w int)) {
		var wg sync.WaitGroup
		for _, s := range sides {
			for w := range workers {
				wg.Go(func() { fn(s, w) })
			}
		}
		wg.Wait()
	}
	owned := func(w int) []int {
		var out []int
		for i := w; i < perNode; i += workers {
			out = append(out, i)
		}
		return out
	}

	start := time.Now()
	parallel(func(s *side, w int) {
		for _, slot := range owned(w) {
			add(s, slot, slot%4 == 0)
		}
	})
	t.Logf("%d pods per node added in %s", perNode, time.Since(start).Round(time.Millisecond))
	deadline := time.Now().Add(duration)
	parallel(func(s *side, w int) {
		rng := rand.New(rand.NewPCG(uint64(w), uint64(len(s.chain.Node.Name))))
		mine := owned(w)
		for n := 0; time.Now().Before(deadline) && len(mine) > 0; n++ {
			slot := mine[rng.IntN(len(mine))]
			del(s, slot)
			add(s, slot, n%4 == 0)
		}
	})
	parallel(func(s *side, w int) {
		for _, slot := range owned(w) {
			del(s, slot)
		}
	})
	elapsed := time.Since(start)

	up, down := there.Stop(), back.Stop()
	for i, e := range errs {
		if i == 20 {
			t.Errorf("... and %d more errors", len(errs)-20)
			break
		}
		t.Error(e)
	}
	for _, st := range []harness.StreamStats{up, down} {
		if st.Received == 0 || st.Lost > max(3, st.Sent/100) {
			t.Errorf("the long-lived pods' stream during churn: %s", st)
		}
	}

	// Nothing of the churned pods may be left, and GC finds nothing to do.
	leaks := 0
	for _, s := range sides {
		prefix := strings.TrimSuffix(s.stable.Path, s.stable.Name)
		if left, _ := filepath.Glob(prefix + "c*"); len(left) != 0 {
			t.Errorf("%s: pod namespaces left: %v", s.chain.Node.Name, left)
			leaks += len(left)
		}
		if l := s.chain.Node.FindLeaks(t, s.stable); !l.Empty() {
			t.Errorf("%s leaks after churn: %s", s.chain.Node.Name, l)
			leaks += l.Count()
		}
		if err := s.chain.GC(s.stable); err != nil {
			t.Errorf("GC: %v", err)
		}
		if out := s.chain.RequireSync(t); containsChange(string(out)) {
			t.Errorf("%s: braid sync after churn changed something:\n%s", s.chain.Node.Name, out)
		}
	}
	pingBoth(t, s1, s2)

	slices.Sort(addTimes)
	pct := func(p int) time.Duration {
		if len(addTimes) == 0 {
			return 0
		}
		return addTimes[min(len(addTimes)-1, len(addTimes)*p/100)].Round(time.Millisecond)
	}
	t.Logf("FIGURE churn: 2 nodes x %d pods, %d workers per node, %s of replacement (%s in all): %d ADDs, %d DELs, %d new pods probed across nodes, %d errors; ADD p50 %s p99 %s; stream n1->n2 %s; n2->n1 %s; leaks found: %d",
		perNode, workers, duration, elapsed.Round(time.Second), adds, dels, probes, len(errs), pct(50), pct(99), up, down, leaks)
}
