package main

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/braid-cni/braid/internal/packet"
	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// router is a private, unnamed network namespace in which test_run's
// bpf_fib_lookup resolves like node 1's would: packets come in on "in0",
// and 198.19.2.0/24 is routed via node 2 (198.18.0.2, a permanent
// neighbour) out of "out0"; 198.19.3.0/24 via node 3, which has no
// neighbour entry; the clients' 198.18.1.0/24 is on-link on out0, with
// the client 198.18.1.10 a permanent neighbour. One goroutine, locked to a thread that joined the
// namespace, runs every program; the namespace goes when it ends.
type router struct {
	in        uint32 // ifindex of in0
	out       uint32 // ifindex of out0, where node 2's replies come in
	outMAC    packet.MAC
	node2MAC  packet.MAC
	clientMAC packet.MAC
	jobs      chan func()
}

func newRouter(t testing.TB) *router {
	t.Helper()
	r := &router{node2MAC: packet.MAC{0x02, 0, 0, 0, 0, 0x02}, clientMAC: packet.MAC{0x02, 0, 0, 0, 0x01, 0x0a}, jobs: make(chan func())}
	ready := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("unshare: %w", err)
			return
		}
		ready <- r.plumb()
		for job := range r.jobs {
			job()
		}
	}()
	if err := <-ready; err != nil {
		close(r.jobs)
		t.Fatalf("private netns: %v", err)
	}
	t.Cleanup(func() { close(r.jobs) })
	return r
}

// plumb builds the namespace's devices, addresses, routes and neighbour.
func (r *router) plumb() error {
	// Forwarding must be on for the fib helper to answer; sysctls of a new
	// netns are its own, set through this thread.
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return err
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "in0"}, PeerName: "out0"}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth: %w", err)
	}
	in, err := netlink.LinkByName("in0")
	if err != nil {
		return err
	}
	out, err := netlink.LinkByName("out0")
	if err != nil {
		return err
	}
	for _, l := range []netlink.Link{in, out} {
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: node1.AsSlice(), Mask: net.CIDRMask(24, 32)}}
	if err := netlink.AddrAdd(out, addr); err != nil {
		return fmt.Errorf("address out0: %w", err)
	}
	for _, rt := range []struct{ dst, via string }{{"198.19.2.0/24", "198.18.0.2"}, {"198.19.3.0/24", "198.18.0.3"}} {
		_, dst, _ := net.ParseCIDR(rt.dst)
		err := netlink.RouteAdd(&netlink.Route{LinkIndex: out.Attrs().Index, Dst: dst, Gw: net.ParseIP(rt.via)})
		if err != nil {
			return fmt.Errorf("route %s: %w", rt.dst, err)
		}
	}
	_, clients, _ := net.ParseCIDR("198.18.1.0/24")
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: out.Attrs().Index, Dst: clients, Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("route to the clients: %w", err)
	}
	for _, n := range []struct {
		ip  net.IP
		mac packet.MAC
	}{{node2.AsSlice(), r.node2MAC}, {client.Addr().AsSlice(), r.clientMAC}} {
		neigh := &netlink.Neigh{LinkIndex: out.Attrs().Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
			IP: n.ip, HardwareAddr: net.HardwareAddr(n.mac[:])}
		if err := netlink.NeighAdd(neigh); err != nil {
			return fmt.Errorf("neighbour %s: %w", n.ip, err)
		}
	}
	r.in = uint32(in.Attrs().Index)
	r.out = uint32(out.Attrs().Index)
	copy(r.outMAC[:], out.Attrs().HardwareAddr)
	return nil
}

// fromNode2 is frame as node 2 sends it to node 1: from node 2's MAC,
// coming in on out0 (where the fib routes node 2's pods).
func (r *router) fromNode2(frame []byte) ([]byte, skbContext) {
	f := append([]byte(nil), frame...)
	copy(f[6:12], r.node2MAC[:])
	return f, skbContext{Ifindex: r.out, IngressIfindex: r.out}
}

// run is a runner: the program runs on the namespace's thread.
func (r *router) run(prog *ebpf.Program, frame []byte, ctx skbContext) (v uint32, out []byte, err error) {
	done := make(chan struct{})
	r.jobs <- func() {
		defer close(done)
		v, out, err = runHere(prog, frame, ctx)
	}
	<-done
	return v, out, err
}
