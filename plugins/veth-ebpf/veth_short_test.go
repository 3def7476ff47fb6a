package main

import (
	"runtime"
	"testing"
	"time"

	"github.com/braid-cni/braid/internal/bpftest"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestShortFramesOnVeth covers what test_run cannot: a frame that says IPv4
// but is shorter than an IPv4 header, as a pod can send one with a packet
// socket. Both programs are attached to a real veth in a private netns and
// must drop such frames as malformed.
func TestShortFramesOnVeth(t *testing.T) {
	objs := loadPrograms(t)

	// The netns lives as long as this thread, which is never unlocked: it
	// ends with the test, and the veth with it.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare netns: %v", err)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "host0"}, PeerName: "pod0"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	host, err := netlink.LinkByName("host0")
	if err != nil {
		t.Fatal(err)
	}
	pod, err := netlink.LinkByName("pod0")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []netlink.Link{host, pod} {
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []struct {
		prog *ebpf.Program
		dir  ebpf.AttachType
	}{{objs.FromContainer, ebpf.AttachTCXIngress}, {objs.ToContainer, ebpf.AttachTCXEgress}} {
		l, err := link.AttachTCX(link.TCXOptions{Interface: host.Attrs().Index, Program: a.prog, Attach: a.dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
	}

	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// A frame dropped by an egress program fails the send with ENOBUFS.
	send := func(l netlink.Link, frame []byte) {
		t.Helper()
		err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: l.Attrs().Index})
		if err != nil && !(l == host && err == unix.ENOBUFS) {
			t.Fatalf("send %d bytes on %s: %v", len(frame), l.Attrs().Name, err)
		}
	}

	before := bpftest.Counters(t, objs.Counters)[ctrDropMalformed]
	full := udpFrame(podA.info.HostMAC, podA.info.PodMAC, podA.ip, podB.ip)
	sent := 0
	for _, n := range []int{14, 20, 33} {
		send(pod, full[:n])  // pod egress: from_container on host0 ingress
		send(host, full[:n]) // pod ingress: to_container on host0 egress
		sent += 2
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := bpftest.Counters(t, objs.Counters)[ctrDropMalformed] - before
		if got == uint64(sent) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("malformed counter rose by %d, want %d", got, sent)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
