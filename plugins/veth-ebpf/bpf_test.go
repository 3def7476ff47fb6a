package main

// The veth-ebpf programs, run on crafted frames with BPF_PROG_TEST_RUN.
//
// A tc program under test_run sees the frame as arriving on the device whose
// ifindex the __sk_buff context names; the kernel uses the loopback device
// for ifindex 0 and 1 (any other must exist). So ifindex 1 plays the pod's
// host-side veth here: pod A "sits behind" ifindex 1, pod B behind another
// veth (ifindex 42, which needs not exist: only the endpoint map names it).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/internal/bpftest"
	"github.com/braid-cni/braid/internal/testenv"
	"github.com/braid-cni/braid/plugins/counters"
	"github.com/cilium/ebpf"
)

// Verdicts as test_run reports them (a u32).
const (
	verdictShot     = 2
	verdictRedirect = 7
	verdictNext     = 0xffffffff // TCX_NEXT, -1
)

// Counter indices of bpf/veth_ebpf.c (counters.go names them).
const (
	ctrRedirectPeer  = int(counters.VethEbpfCounterCNT_REDIRECT_PEER)
	ctrPassNext      = int(counters.VethEbpfCounterCNT_PASS_NEXT)
	ctrDropSpoofIP   = int(counters.VethEbpfCounterCNT_DROP_SPOOF_IP)
	ctrDropSpoofMAC  = int(counters.VethEbpfCounterCNT_DROP_SPOOF_MAC)
	ctrDropSpoofARP  = int(counters.VethEbpfCounterCNT_DROP_SPOOF_ARP)
	ctrDropProto     = int(counters.VethEbpfCounterCNT_DROP_PROTO)
	ctrDropMalformed = int(counters.VethEbpfCounterCNT_DROP_MALFORMED)
	ctrDropNotOurs   = int(counters.VethEbpfCounterCNT_DROP_NOT_OURS)
	ctrToContainer   = int(counters.VethEbpfCounterCNT_TO_CONTAINER)
	ctrDropVLAN      = int(counters.VethEbpfCounterCNT_DROP_VLAN)
)

// skbContext is the head of struct __sk_buff, up to ifindex: test_run takes
// a prefix and requires every field it does not support to be zero.
type skbContext struct {
	Len, PktType, Mark, QueueMapping, Protocol, VlanPresent, VlanTCI, VlanProto uint32
	Priority, IngressIfindex, Ifindex                                           uint32
}

const vethIfindex = 1 // lo, standing in for pod A's host veth

// A test endpoint: an entry of the endpoint map.
type testEndpoint struct {
	ip   netip.Addr
	info maps.EndpointInfo
}

var (
	podA = testEndpoint{netip.MustParseAddr("198.19.0.2"), maps.EndpointInfo{
		Ifindex: vethIfindex, ID: 1,
		PodMAC: mac{0x02, 0, 0, 0, 0x0a, 0x01}, HostMAC: mac{0x02, 0, 0, 0, 0x0a, 0xfe}}}
	podB = testEndpoint{netip.MustParseAddr("198.19.0.3"), maps.EndpointInfo{
		Ifindex: 42, ID: 2,
		PodMAC: mac{0x02, 0, 0, 0, 0x0b, 0x01}, HostMAC: mac{0x02, 0, 0, 0, 0x0b, 0xfe}}}
	gateway  = netip.MustParseAddr("198.19.0.1")
	external = netip.MustParseAddr("198.18.1.10")
	unknown  = netip.MustParseAddr("198.19.0.99")
)

// loadPrograms loads the veth-ebpf objects against a fresh endpoint map
// holding pod A and pod B, with nothing pinned.
func loadPrograms(t testing.TB) *vethEbpfObjects {
	t.Helper()
	testenv.RequireRoot(t)
	spec, err := loadVethEbpf()
	if err != nil {
		t.Fatal(err)
	}
	spec.Maps[vethEbpfMapCounters].Pinning = ebpf.PinNone

	eps, err := ebpf.NewMap(maps.EndpointsSpec())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eps.Close() })
	for _, ep := range []testEndpoint{podA, podB} {
		if err := eps.Put(maps.Key(ep.ip), ep.info); err != nil {
			t.Fatal(err)
		}
	}

	objs := &vethEbpfObjects{}
	err = spec.LoadAndAssign(objs, &ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{vethEbpfMapEndpoints: eps},
	})
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		t.Fatalf("verifier rejected the programs:\n%+v", ve)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	return objs
}

// run runs prog once on frame as received on ifindex 1 and returns the
// verdict and the frame as the program left it.
func run(prog *ebpf.Program, frame []byte) (uint32, []byte, error) {
	opts := &ebpf.RunOptions{
		Data:    frame,
		DataOut: make([]byte, len(frame)+256),
		Context: skbContext{Ifindex: vethIfindex},
	}
	ret, err := prog.Run(opts)
	return ret, opts.DataOut, err
}

func verdictName(v uint32) string {
	switch v {
	case verdictShot:
		return "TC_ACT_SHOT"
	case verdictRedirect:
		return "TC_ACT_REDIRECT"
	case verdictNext:
		return "TCX_NEXT"
	}
	return fmt.Sprint(v)
}

type progCase struct {
	name    string
	frame   []byte
	verdict uint32
	counter int
	// out is the frame the program must leave; nil means unchanged.
	out []byte
}

// check runs every case and checks verdict, output frame and that exactly
// the case's counter went up by one.
func check(t *testing.T, objs *vethEbpfObjects, prog *ebpf.Program, cases []progCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := bpftest.Counters(t, objs.Counters)
			verdict, out, err := run(prog, tc.frame)
			if err != nil {
				t.Fatal(err)
			}
			if verdict != tc.verdict {
				t.Errorf("verdict = %s, want %s", verdictName(verdict), verdictName(tc.verdict))
			}
			want := tc.out
			if want == nil {
				want = tc.frame
			}
			if !bytes.Equal(out, want) {
				t.Errorf("frame out:\n% x\nwant:\n% x", out, want)
			}
			after := bpftest.Counters(t, objs.Counters)
			for i := range after {
				want := before[i]
				if i == tc.counter {
					want++
				}
				if after[i] != want {
					name := fmt.Sprint(i)
					if i < len(counterNames) {
						name = counterNames[i]
					}
					t.Errorf("counter %s went from %d to %d, want %d", name, before[i], after[i], want)
				}
			}
		})
	}
}

// withMACs returns a copy of frame with its Ethernet addresses replaced.
func withMACs(frame []byte, dst, src mac) []byte {
	out := bytes.Clone(frame)
	copy(out[0:6], dst[:])
	copy(out[6:12], src[:])
	return out
}

// withByte returns a copy of frame with frame[i] = v.
func withByte(frame []byte, i int, v byte) []byte {
	out := bytes.Clone(frame)
	out[i] = v
	return out
}

func fromContainerCases() []progCase {
	a, b := podA.info, podB.info
	aToB := udpFrame(a.HostMAC, a.PodMAC, podA.ip, podB.ip)
	arpFromA := ethernet(broadcastMAC, a.PodMAC, etherTypeARP, arp(arpRequest, a.PodMAC, podA.ip, mac{}, gateway))
	return []progCase{
		{
			name: "to a local pod: redirected with its MACs", frame: aToB,
			verdict: verdictRedirect, counter: ctrRedirectPeer,
			out: withMACs(aToB, b.PodMAC, b.HostMAC),
		},
		{
			name:  "to itself: redirected back into the pod",
			frame: udpFrame(a.HostMAC, a.PodMAC, podA.ip, podA.ip), verdict: verdictRedirect, counter: ctrRedirectPeer,
			out: withMACs(udpFrame(a.HostMAC, a.PodMAC, podA.ip, podA.ip), a.PodMAC, a.HostMAC),
		},
		{
			name:  "off-node destination: next program, untouched",
			frame: udpFrame(a.HostMAC, a.PodMAC, podA.ip, external), verdict: verdictNext, counter: ctrPassNext,
		},
		{
			name:  "to the gateway: next program",
			frame: udpFrame(a.HostMAC, a.PodMAC, podA.ip, gateway), verdict: verdictNext, counter: ctrPassNext,
		},
		{
			name:  "to a local pod, IP options: still redirected",
			frame: ipv4WithOptions(a, podA.ip, podB.ip), verdict: verdictRedirect, counter: ctrRedirectPeer,
			out: withMACs(ipv4WithOptions(a, podA.ip, podB.ip), b.PodMAC, b.HostMAC),
		},
		{
			name:  "spoofed source IP",
			frame: udpFrame(a.HostMAC, a.PodMAC, unknown, podB.ip), verdict: verdictShot, counter: ctrDropSpoofIP,
		},
		{
			name:  "source IP of a pod behind another veth",
			frame: udpFrame(a.HostMAC, b.PodMAC, podB.ip, external), verdict: verdictShot, counter: ctrDropSpoofIP,
		},
		{
			name:  "right source IP, wrong source MAC",
			frame: udpFrame(a.HostMAC, b.PodMAC, podA.ip, podB.ip), verdict: verdictShot, counter: ctrDropSpoofMAC,
		},
		{
			name: "ARP request: next program", frame: arpFromA, verdict: verdictNext, counter: ctrPassNext,
		},
		{
			name:    "ARP reply: next program",
			frame:   ethernet(a.HostMAC, a.PodMAC, etherTypeARP, arp(arpReply, a.PodMAC, podA.ip, a.HostMAC, gateway)),
			verdict: verdictNext, counter: ctrPassNext,
		},
		{
			name:    "ARP claiming another pod's IP",
			frame:   ethernet(broadcastMAC, a.PodMAC, etherTypeARP, arp(arpReply, a.PodMAC, podB.ip, mac{}, gateway)),
			verdict: verdictShot, counter: ctrDropSpoofARP,
		},
		{
			name:    "ARP claiming an unknown IP",
			frame:   ethernet(broadcastMAC, a.PodMAC, etherTypeARP, arp(arpRequest, a.PodMAC, unknown, mac{}, gateway)),
			verdict: verdictShot, counter: ctrDropSpoofARP,
		},
		{
			name:    "ARP with a forged sender MAC",
			frame:   ethernet(broadcastMAC, a.PodMAC, etherTypeARP, arp(arpRequest, b.PodMAC, podA.ip, mac{}, gateway)),
			verdict: verdictShot, counter: ctrDropSpoofARP,
		},
		{
			name:    "ARP from a forged Ethernet source",
			frame:   ethernet(broadcastMAC, b.PodMAC, etherTypeARP, arp(arpRequest, a.PodMAC, podA.ip, mac{}, gateway)),
			verdict: verdictShot, counter: ctrDropSpoofARP,
		},
		{
			name:  "ARP for another hardware type",
			frame: withByte(arpFromA, 14+1, 6), verdict: verdictShot, counter: ctrDropMalformed,
		},
		{
			name:  "ARP for another protocol address length",
			frame: withByte(arpFromA, 14+5, 16), verdict: verdictShot, counter: ctrDropMalformed,
		},
		{
			name:  "IPv6",
			frame: ethernet(a.HostMAC, a.PodMAC, etherTypeIPv6, make([]byte, 40)), verdict: verdictShot, counter: ctrDropProto,
		},
		{
			// The tag of a real frame is in skb metadata by now, which
			// test_run cannot set: integration/hostile TestVLANFromPod.
			name:    "VLAN tagged",
			frame:   ethernet(a.HostMAC, a.PodMAC, etherTypeVLAN, append([]byte{0, 5, 8, 0}, aToB[14:]...)),
			verdict: verdictShot, counter: ctrDropVLAN,
		},
		{
			name:    "802.1AD tagged",
			frame:   ethernet(a.HostMAC, a.PodMAC, 0x88a8, append([]byte{0, 5, 8, 0}, aToB[14:]...)),
			verdict: verdictShot, counter: ctrDropVLAN,
		},
		{
			name: "IPv4 header with version 6", frame: withByte(aToB, 14, 0x65),
			verdict: verdictShot, counter: ctrDropMalformed,
		},
		{
			name: "IPv4 header with IHL 4", frame: withByte(aToB, 14, 0x44),
			verdict: verdictShot, counter: ctrDropMalformed,
		},
		// Truncated IPv4 cannot go through test_run (see TestTestRunRefuses):
		// TestShortFramesOnVeth covers it; ARP takes the same bounds checks.
		{
			name: "truncated: Ethernet header only (ARP)", frame: arpFromA[:14], verdict: verdictShot, counter: ctrDropMalformed,
		},
		{
			name: "truncated: 20 bytes (ARP)", frame: arpFromA[:20], verdict: verdictShot, counter: ctrDropMalformed,
		},
		{
			name: "truncated: 41 bytes (ARP)", frame: arpFromA[:41], verdict: verdictShot, counter: ctrDropMalformed,
		},
		{
			name: "truncated: unknown ethertype, header only", frame: withByte(arpFromA[:14], 12, 0x88),
			verdict: verdictShot, counter: ctrDropProto,
		},
	}
}

// ipv4WithOptions is a frame from pod a whose IPv4 header carries a
// 4-byte option (NOP, NOP, NOP, EOL), IHL 6.
func ipv4WithOptions(a maps.EndpointInfo, src, dst netip.Addr) []byte {
	pkt := ipv4(src, dst, protoUDP, append([]byte{1, 1, 1, 0}, udp(src, dst, 1, 2, nil)...))
	pkt[0] = 0x46
	pkt[10], pkt[11] = 0, 0
	c := checksum(pkt[:24])
	pkt[10], pkt[11] = byte(c>>8), byte(c)
	return ethernet(a.HostMAC, a.PodMAC, etherTypeIPv4, pkt)
}

func toContainerCases() []progCase {
	a, b := podA.info, podB.info
	return []progCase{
		{
			name:  "to the pod behind this veth",
			frame: udpFrame(a.PodMAC, a.HostMAC, external, podA.ip), verdict: verdictNext, counter: ctrToContainer,
		},
		{
			name:  "to a pod behind another veth",
			frame: udpFrame(a.PodMAC, a.HostMAC, external, podB.ip), verdict: verdictShot, counter: ctrDropNotOurs,
		},
		{
			name:  "to an unknown address",
			frame: udpFrame(a.PodMAC, a.HostMAC, external, unknown), verdict: verdictShot, counter: ctrDropNotOurs,
		},
		{
			name:    "ARP request to the pod",
			frame:   ethernet(broadcastMAC, a.HostMAC, etherTypeARP, arp(arpRequest, a.HostMAC, gateway, mac{}, podA.ip)),
			verdict: verdictNext, counter: ctrToContainer,
		},
		{
			name:    "ARP about another pod",
			frame:   ethernet(broadcastMAC, b.HostMAC, etherTypeARP, arp(arpRequest, b.HostMAC, gateway, mac{}, podB.ip)),
			verdict: verdictNext, counter: ctrToContainer,
		},
		{
			// IPv6 is disabled in the pod (and on the host veth).
			name:  "IPv6",
			frame: ethernet(a.PodMAC, a.HostMAC, etherTypeIPv6, make([]byte, 40)), verdict: verdictShot, counter: ctrDropProto,
		},
		{
			name:    "VLAN tagged",
			frame:   ethernet(a.PodMAC, a.HostMAC, etherTypeVLAN, append([]byte{0, 5, 8, 0}, udpFrame(a.PodMAC, a.HostMAC, external, podA.ip)[14:]...)),
			verdict: verdictShot, counter: ctrDropVLAN,
		},
		{
			name:  "IPv4 header with IHL 3",
			frame: withByte(udpFrame(a.PodMAC, a.HostMAC, external, podA.ip), 14, 0x43), verdict: verdictShot, counter: ctrDropMalformed,
		},
		{
			name:    "truncated ARP passes on",
			frame:   ethernet(broadcastMAC, a.HostMAC, etherTypeARP, arp(arpRequest, a.HostMAC, gateway, mac{}, podA.ip))[:20],
			verdict: verdictNext, counter: ctrToContainer,
		},
	}
}

func TestFromContainer(t *testing.T) {
	objs := loadPrograms(t)
	check(t, objs, objs.FromContainer, fromContainerCases())
}

func TestToContainer(t *testing.T) {
	objs := loadPrograms(t)
	check(t, objs, objs.ToContainer, toContainerCases())
}

// testRunAccepts says whether test_run (6.18) takes frame: never less than
// an Ethernet header, and for IPv4/IPv6 never less than the fixed L3 header.
func testRunAccepts(frame []byte) bool {
	if len(frame) < 14 {
		return false
	}
	switch binary.BigEndian.Uint16(frame[12:]) {
	case etherTypeIPv4:
		return len(frame) >= 14+20
	case etherTypeIPv6:
		return len(frame) >= 14+40
	}
	return true
}

// test_run refuses frames shorter than an Ethernet header (the stack never
// hands one to tc) and, on this kernel, IPv4 frames shorter than an IPv4
// header, although such a frame can reach a tc program on a real veth.
func TestTestRunRefuses(t *testing.T) {
	objs := loadPrograms(t)
	full := udpFrame(podA.info.HostMAC, podA.info.PodMAC, podA.ip, podB.ip)
	for _, n := range []int{0, 10, 13, 14, 20, 33} {
		if testRunAccepts(full[:n]) {
			t.Fatalf("testRunAccepts(%d bytes of IPv4)", n)
		}
		for name, prog := range map[string]*ebpf.Program{"from_container": objs.FromContainer, "to_container": objs.ToContainer} {
			if v, _, err := run(prog, full[:n]); err == nil {
				t.Errorf("%s ran on %d bytes (verdict %s): adjust testRunAccepts and test these frames here",
					name, n, verdictName(v))
			}
		}
	}
}

// Removing a pod's map entry stops its traffic at once: no state is cached.
func TestEndpointRemovalTakesEffect(t *testing.T) {
	objs := loadPrograms(t)
	frame := udpFrame(podA.info.HostMAC, podA.info.PodMAC, podA.ip, podB.ip)
	if v, _, _ := run(objs.FromContainer, frame); v != verdictRedirect {
		t.Fatalf("before removal: %s", verdictName(v))
	}
	if err := objs.Endpoints.Delete(maps.Key(podB.ip)); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := run(objs.FromContainer, frame); v != verdictNext {
		t.Errorf("to a removed pod: %s, want TCX_NEXT", verdictName(v))
	}
	if err := objs.Endpoints.Delete(maps.Key(podA.ip)); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := run(objs.FromContainer, frame); v != verdictShot {
		t.Errorf("from a removed pod: %s, want TC_ACT_SHOT", verdictName(v))
	}
}

// FuzzPrograms feeds arbitrary frames to both programs: they must always
// load-and-run cleanly, return one of their verdicts, and rewrite a frame
// only when redirecting it to a known pod.
func FuzzPrograms(f *testing.F) {
	for _, tc := range append(fromContainerCases(), toContainerCases()...) {
		f.Add(tc.frame)
	}
	objs := loadPrograms(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if !testRunAccepts(frame) || len(frame) > 1514 {
			t.Skip("not a frame test_run accepts")
		}
		v, out, err := run(objs.FromContainer, frame)
		if err != nil {
			t.Fatalf("from_container: %v", err)
		}
		switch v {
		case verdictShot, verdictNext:
			if !bytes.Equal(out, frame) {
				t.Errorf("from_container changed a frame it did not redirect (%s)", verdictName(v))
			}
		case verdictRedirect:
			rewrittenFor := func(ep testEndpoint) bool {
				return bytes.Equal(out, withMACs(frame, ep.info.PodMAC, ep.info.HostMAC))
			}
			if !rewrittenFor(podA) && !rewrittenFor(podB) {
				t.Errorf("redirected frame not addressed to a pod:\n% x", out)
			}
		default:
			t.Errorf("from_container verdict %s", verdictName(v))
		}

		v, out, err = run(objs.ToContainer, frame)
		if err != nil {
			t.Fatalf("to_container: %v", err)
		}
		if v != verdictShot && v != verdictNext {
			t.Errorf("to_container verdict %s", verdictName(v))
		}
		if !bytes.Equal(out, frame) {
			t.Error("to_container changed the frame")
		}
	})
}

// Every drop and pass reason of the programs is exercised by some case.
func TestEveryCounterCovered(t *testing.T) {
	seen := map[int]bool{}
	for _, tc := range append(fromContainerCases(), toContainerCases()...) {
		seen[tc.counter] = true
	}
	for i, name := range counterNames {
		if !seen[i] {
			t.Errorf("no case exercises counter %s", name)
		}
	}
}
