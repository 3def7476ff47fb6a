package faults

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/testenv"
)

// TestKilledPlugins kills a plugin of the chain with SIGKILL at a random
// point of ADD or DEL, iteration after iteration, then does what a runtime
// does after a failed call (DEL, or GC once it lost track of the pod; after
// a failed ADD sometimes a new ADD first). After each iteration the node
// must hold nothing for the pod; a pod that lives through all of it must
// keep working, and so must a new pod at the end.
func TestKilledPlugins(t *testing.T) {
	iterations := testenv.EnvInt(t, "BRAID_KILL_ITERATIONS", 50)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BRAID_KILL_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("kill schedule seed %d (BRAID_KILL_SEED reproduces it)", seed)

	cl := twoNodes(t, "vxlan.conflist")
	keep, remote := cl.c1.AddPod(t, "keep"), cl.c2.AddPod(t, "remote")
	pingBoth(t, keep, remote)

	killer := &harness.PluginKiller{}
	kc := cl.c1.WithKiller(killer)
	plugins := []string{"veth-ebpf", "vxlan-tunnel"}
	// Time each plugin's verbs, so that kills spread over their whole run
	// (the timings keep being updated by every process that is not killed).
	for i := range 5 {
		p := kc.AddPod(t, fmt.Sprintf("cal%d", i))
		if err := p.Del(); err != nil {
			t.Fatal(err)
		}
		_ = p.RemoveNetns()
	}
	for _, pl := range plugins {
		t.Logf("%s: ADD takes %s, DEL %s (medians)", pl, killer.Median(pl, "ADD"), killer.Median(pl, "DEL"))
	}

	type tally struct{ killed, finished int }
	byTarget := map[string]*tally{}
	recoveries := map[string]int{}
	for i := range iterations {
		verb := []string{"ADD", "DEL"}[rng.IntN(2)]
		plugin := plugins[rng.IntN(len(plugins))]
		span := killer.Median(plugin, verb)
		after := time.Duration(rng.Int64N(int64(span) + 1))
		p, err := kc.TryNewPod(fmt.Sprintf("k%d", i))
		if err != nil {
			t.Fatal(err)
		}

		var callErr error
		if verb == "DEL" {
			if err := p.Add(); err != nil {
				t.Fatalf("iteration %d: ADD before the killed DEL: %v", i, err)
			}
		}
		killer.Arm(plugin, verb, after)
		if verb == "ADD" {
			callErr = p.Add()
		} else {
			callErr = p.Del()
		}
		out := killer.Disarm()
		key := plugin + " " + verb
		if byTarget[key] == nil {
			byTarget[key] = &tally{}
		}
		if out.Killed {
			byTarget[key].killed++
			if callErr == nil {
				t.Errorf("iteration %d: %s was killed but the call succeeded", i, key)
			}
		} else {
			byTarget[key].finished++
			if callErr != nil {
				t.Errorf("iteration %d: %s was not killed, yet the call failed: %v", i, key, callErr)
			}
		}

		// What a runtime does next. The pod goes through the plain chain now.
		p.Chain = cl.c1
		recovery := []string{"DEL", "DEL", "GC", "ADD again"}[rng.IntN(4)]
		if verb == "DEL" && recovery == "ADD again" {
			recovery = "DEL"
		}
		recoveries[recovery]++
		switch recovery {
		case "ADD again":
			if err := p.Add(); err != nil {
				t.Errorf("iteration %d: ADD after a killed %s: %v", i, key, err)
			} else if err := p.Ping(remote.IP); err != nil {
				t.Errorf("iteration %d: pod added again after a killed %s: %v", i, key, err)
			}
			fallthrough
		case "DEL":
			if err := p.Del(); err != nil {
				t.Errorf("iteration %d: DEL after a killed %s: %v", i, key, err)
			}
		case "GC":
			if err := p.ForgetCache(); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			if err := cl.c1.GC(keep); err != nil {
				t.Errorf("iteration %d: GC after a killed %s: %v", i, key, err)
			}
		}
		if err := p.RemoveNetns(); err != nil {
			t.Fatal(err)
		}
		if l := cl.n1.FindLeaks(t, keep); !l.Empty() {
			t.Fatalf("iteration %d: %s killed after %s (killed %v), recovery %s: node leaks %s",
				i, key, after, out.Killed, recovery, l)
		}
	}

	// Whatever a kill left on the node side of the cluster, GC and a new pod
	// must find everything working.
	if err := cl.c1.GC(keep); err != nil {
		t.Fatalf("final GC: %v", err)
	}
	cl.n1.RequireNoLeaks(t, keep)
	before := cl.n1.CounterSet(t, "vxlan-tunnel")
	fresh := cl.c1.AddPod(t, "fresh")
	if err := fresh.Check(); err != nil {
		t.Errorf("CHECK of a new pod: %v", err)
	}
	pingBoth(t, fresh, remote)
	pingBoth(t, keep, remote)
	pingBoth(t, fresh, keep)
	fresh.RequireTCP(t, remote.NS, remote.IP)
	if d := cl.n1.CounterSet(t, "vxlan-tunnel").Delta(t, before, "encap"); d < 4 {
		t.Errorf("encap counter rose by %d, want the pods' packets to take the eBPF path", d)
	}
	for _, p := range []*harness.Pod{fresh, keep} {
		if err := p.Del(); err != nil {
			t.Fatal(err)
		}
	}
	if err := remote.Del(); err != nil {
		t.Fatal(err)
	}
	cl.n1.RequireNoLeaks(t)
	cl.n2.RequireNoLeaks(t)

	killed, finished := 0, 0
	for k, v := range byTarget {
		t.Logf("FIGURE kill %s: %d killed part-way, %d finished before the kill", k, v.killed, v.finished)
		killed += v.killed
		finished += v.finished
	}
	t.Logf("FIGURE kill: %d iterations (seed %d), %d plugin processes killed part-way, %d finished first; recoveries %v; leaks found: 0",
		iterations, seed, killed, finished, recoveries)
}
