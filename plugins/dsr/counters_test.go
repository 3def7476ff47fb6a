package main

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// counterNames and the test's ctr constants follow the CNT_ enum of
// bpf/dsr.c: names lower-cased without CNT_, at the enum's values.
func TestCounterNamesMatchSource(t *testing.T) {
	src, err := os.ReadFile("../../bpf/dsr.c")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^\s*CNT_([A-Z_]+)\s*=\s*(\d+),`)
	found := re.FindAllSubmatch(src, -1)
	if len(found) == 0 {
		t.Fatal("no CNT_ enum in bpf/dsr.c")
	}
	if len(found) != len(counterNames) {
		t.Errorf("bpf/dsr.c has %d counters, counterNames %d", len(found), len(counterNames))
	}
	for _, m := range found {
		i, _ := strconv.Atoi(string(m[2]))
		want := strings.ToLower(string(m[1]))
		if i >= len(counterNames) || counterNames[i] != want {
			t.Errorf("counter %d is CNT_%s in bpf/dsr.c; counterNames says %q", i, m[1], counterNames[min(i, len(counterNames)-1)])
		}
	}
	if ctrPass != len(counterNames)-1 {
		t.Errorf("the test's ctr constants stop at %d, counterNames at %d", ctrPass, len(counterNames)-1)
	}
}
