package main

import (
	"os"
	"regexp"
	"strconv"
	"testing"
)

// TestCounterNamesMatchC: the names and indices here are the enum of
// bpf/sock_lb.c, in order.
func TestCounterNamesMatchC(t *testing.T) {
	src, err := os.ReadFile("../../bpf/sock_lb.c")
	if err != nil {
		t.Fatal(err)
	}
	enum := regexp.MustCompile(`(?m)^\s*CNT_([A-Z_]+)\s*=\s*(\d+),`).FindAllSubmatch(src, -1)
	if len(enum) == 0 {
		t.Fatal("no CNT_ enum in bpf/sock_lb.c")
	}
	if len(enum) != len(counterNames) {
		t.Fatalf("bpf/sock_lb.c has %d counters, counterNames %d", len(enum), len(counterNames))
	}
	want := map[string]int{
		"CONNECT_LB": cntConnectLB, "SENDMSG_LB": cntSendmsgLB, "REFUSED_EMPTY": cntRefusedEmpty,
		"REVNAT": cntRevNAT, "SKIPPED_NETNS": cntSkippedNetns, "BACKEND_MISSING": cntBackendMissing,
	}
	for i, m := range enum {
		name, idx := string(m[1]), string(m[2])
		if n, _ := strconv.Atoi(idx); n != i {
			t.Errorf("CNT_%s = %s, want %d (dense, in order)", name, idx, i)
		}
		if c, ok := want[name]; !ok || c != i {
			t.Errorf("CNT_%s (%d) has no matching cnt constant here", name, i)
		}
		if lower := regexp.MustCompile(`[A-Z]`).ReplaceAllStringFunc(name, func(s string) string { return string(s[0] + 32) }); counterNames[i] != lower {
			t.Errorf("counterNames[%d] = %q, C says CNT_%s", i, counterNames[i], name)
		}
	}
}
