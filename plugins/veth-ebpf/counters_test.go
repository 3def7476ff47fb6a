package main

import (
	"testing"

	"github.com/braid-cni/braid/internal/bpftest"
)

// The counter names mirror the C enum, index by index, and so do the
// tests' indexes.
func TestCountersMatchSource(t *testing.T) {
	enum := bpftest.CounterEnum(t, "../../bpf/veth_ebpf.c")
	if len(enum) != len(counterNames) {
		t.Fatalf("bpf/veth_ebpf.c has %d counters, counters.go %d", len(enum), len(counterNames))
	}
	for i, name := range enum {
		if counterNames[i] != name {
			t.Errorf("counter %d: C says %q, counters.go %q", i, name, counterNames[i])
		}
	}
	for idx, name := range map[int]string{ctrRedirectPeer: "redirect_peer", ctrPassNext: "pass_next",
		ctrDropSpoofIP: "drop_spoof_ip", ctrDropSpoofMAC: "drop_spoof_mac", ctrDropSpoofARP: "drop_spoof_arp",
		ctrDropProto: "drop_proto", ctrDropMalformed: "drop_malformed", ctrDropNotOurs: "drop_not_ours",
		ctrToContainer: "to_container"} {
		if enum[idx] != name {
			t.Errorf("the tests' index for %s is %d, where C has %s", name, idx, enum[idx])
		}
	}
}
