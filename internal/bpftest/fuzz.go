package bpftest

import (
	"encoding/binary"
	"slices"
	"testing"
)

// MaxFrame bounds fuzzed frames: an Ethernet frame on a 1500-byte MTU.
const MaxFrame = 1514

// Accepts says whether test_run (6.18) takes frame as a tc program's input:
// never less than an Ethernet header, and for IPv4 and IPv6 never less than
// the fixed L3 header, although such frames can reach a tc program on a
// real device (plugins/veth-ebpf's TestShortFramesOnVeth sends them).
func Accepts(frame []byte) bool {
	if len(frame) < 14 || len(frame) > MaxFrame {
		return false
	}
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		return len(frame) >= 14+20
	case 0x86dd:
		return len(frame) >= 14+40
	}
	return true
}

// RequireVerdict fails t unless v is one of the verdicts allowed.
func RequireVerdict(t testing.TB, prog string, v uint32, allowed ...uint32) {
	t.Helper()
	if !slices.Contains(allowed, v) {
		names := make([]string, len(allowed))
		for i, a := range allowed {
			names[i] = VerdictName(a)
		}
		t.Errorf("%s returned %s, want one of %v", prog, VerdictName(v), names)
	}
}

// Moved is how much the counters rose in all between before and after.
func Moved(before, after []uint64) uint64 {
	var sum uint64
	for i := range after {
		sum += after[i] - before[i]
	}
	return sum
}

// HeaderConsistent reports whether frame holds an IPv4 header a stack
// would take: version 4, IHL at least 5, the header within the total
// length and the total length within the frame.
func HeaderConsistent(frame []byte) bool {
	if len(frame) < 14+20 || frame[14]>>4 != 4 {
		return false
	}
	ihl := int(frame[14]&0x0f) * 4
	tot := int(binary.BigEndian.Uint16(frame[14+2:]))
	return ihl >= 20 && tot >= ihl && 14+tot <= len(frame)
}
