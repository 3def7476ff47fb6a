package counters

import (
	"path/filepath"
	"regexp"
	"testing"

	"github.com/cilium/ebpf"
)

// objects are the plugins' committed bpf2go objects, whose counters map the
// names index.
var objects = map[string]string{
	"veth-ebpf":    "../veth-ebpf/vethebpf_bpfel.o",
	"vxlan-tunnel": "../vxlan-tunnel/vxlantunnel_bpfel.o",
	"native-route": "../native-route/nativeroute_bpfel.o",
	"sock-lb":      "../sock-lb/socklb_bpfel.o",
	"dsr":          "../dsr/dsr_bpfel.o",
}

// Every plugin's names are metric labels, one per index of its counters
// map, and fit that map.
func TestNamesFitCountersMap(t *testing.T) {
	label := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	if len(Plugins()) != len(objects) {
		t.Fatalf("plugins with counters: %v, objects known to the test: %d", Plugins(), len(objects))
	}
	for plugin, obj := range objects {
		names := Names(plugin)
		if len(names) == 0 {
			t.Errorf("%s: no counter names", plugin)
		}
		seen := map[string]bool{}
		for i, n := range names {
			if !label.MatchString(n) || seen[n] {
				t.Errorf("%s: counter %d is %q: not a label, or a repeat", plugin, i, n)
			}
			seen[n] = true
		}
		spec, err := ebpf.LoadCollectionSpec(filepath.Clean(obj))
		if err != nil {
			t.Fatal(err)
		}
		if m := spec.Maps["counters"]; m == nil || int(m.MaxEntries) < len(names) {
			t.Errorf("%s: %d counters do not fit its counters map %v", plugin, len(names), m)
		}
	}
}

// A name is the constant's CNT_ suffix in lower case, at its value.
func TestNameOfConstant(t *testing.T) {
	for _, c := range []struct {
		plugin string
		index  int
		want   string
	}{
		{"veth-ebpf", int(VethEbpfCounterCNT_DROP_SPOOF_IP), "drop_spoof_ip"},
		{"vxlan-tunnel", int(VxlanTunnelCounterCNT_FRAG_NEEDED), "frag_needed"},
		{"native-route", int(NativeRouteCounterCNT_FIB_TO_STACK), "fib_to_stack"},
		{"sock-lb", int(SockLBCounterCNT_REVNAT), "revnat"},
		{"dsr", int(DSRCounterCNT_PASS), "pass"},
	} {
		if got := Name(c.plugin, c.index); got != c.want {
			t.Errorf("%s counter %d is %q, want %q", c.plugin, c.index, got, c.want)
		}
	}
	if Names("ptp") != nil || Name("ptp", 3) != "3" {
		t.Error("a plugin without counters has names")
	}
}
