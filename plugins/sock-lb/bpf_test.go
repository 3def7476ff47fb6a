package main

// The sock-lb programs for real. cgroup sock_addr programs do not support
// BPF_PROG_TEST_RUN, so the test attaches them, through the plugin's own
// Reconcile, to a private cgroup, and a child process born in that cgroup
// (this test binary re-executed as a sockprobe) makes the connects. Everything
// happens in private network namespaces: the backends listen on 127.0.0.x
// there, and a VIP that is not balanced has no route (ENETUNREACH), so it
// can never leave the machine.

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"

	"github.com/braid-cni/braid/core/chained"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/internal/sockprobe"
	"github.com/braid-cni/braid/internal/testenv"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	sockprobe.Main()
	os.Exit(m.Run())
}

// netns is a private network namespace with lo up, kept alive by an fd.
type netns struct{ fd int }

func newNetns(t *testing.T) *netns {
	t.Helper()
	ns := &netns{fd: -1}
	err := onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return err
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ns.fd = fd
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	if ns.fd >= 0 {
		t.Cleanup(func() { unix.Close(ns.fd) })
	}
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	return ns
}

// do runs fn on a thread in ns; sockets and processes fn makes are in ns.
func (ns *netns) do(fn func() error) error {
	return onThread(func() error {
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			return err
		}
		return fn()
	})
}

// onThread runs fn on a locked OS thread that dies with its goroutine, so a
// namespace change never leaks to other goroutines.
func onThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- fn()
	}()
	return <-errc
}

// lbEnv is the plugin's datapath attached to a private cgroup, a "node"
// netns whose sockets it balances, and backends in that netns.
type lbEnv struct {
	t      *testing.T
	conf   *NetConf
	d      *datapath
	cgroup string
	cgfd   int
	node   *netns
}

func newLB(t *testing.T) *lbEnv {
	t.Helper()
	bpfRoot := testenv.BPFFS(t)
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	cg := testenv.Cgroup(t, fmt.Sprintf("bs-socklb-unit-%08x", h.Sum32()))
	conf, err := parseConfig(fmt.Appendf(nil, `{"cniVersion":"1.0.0","name":"t","type":"sock-lb",
		"stateDir":%q,"bpfRoot":%q,"cgroupRoot":%q}`, t.TempDir(), bpfRoot, cg))
	if err != nil {
		t.Fatal(err)
	}
	d, err := openDatapath(conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return &lbEnv{t: t, conf: conf, d: d, cgroup: cg, cgfd: testenv.CgroupFD(t, cg), node: newNetns(t)}
}

// reconcile runs the plugin's Reconcile from the node netns, as a CNI call
// on the node would, with services as the cluster's.
func (e *lbEnv) reconcile(services ...store.Service) {
	e.t.Helper()
	e.reconcileCluster(chained.Cluster{Services: services})
}

// reconcileCluster is reconcile with nodes as well.
func (e *lbEnv) reconcileCluster(c chained.Cluster) {
	e.t.Helper()
	r := &plugin.Report{}
	if err := e.node.do(func() error { return e.d.Reconcile(c, r) }); err != nil {
		e.t.Fatalf("reconcile: %v", err)
	}
	if len(r.Problems) > 0 {
		e.t.Fatalf("reconcile problems: %v", r.Problems)
	}
}

// probe starts a client process in ns and in the balanced cgroup.
func (e *lbEnv) probe(ns *netns) *sockprobe.Probe {
	e.t.Helper()
	cmd, err := sockprobe.Command()
	if err != nil {
		e.t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: e.cgfd}
	var p *sockprobe.Probe
	if err := ns.do(func() (err error) { p, err = sockprobe.Start(cmd); return err }); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(p.Stop)
	return p
}

func (e *lbEnv) counters() []uint64 {
	e.t.Helper()
	c, err := maps.Counters(e.d.objs.Counters)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// tcpBackend listens on ip:0 in ns and answers with name.
func tcpBackend(t *testing.T, ns *netns, ip, name string) store.Backend {
	t.Helper()
	var l net.Listener
	if err := ns.do(func() (err error) { l, err = net.Listen("tcp4", ip+":0"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go sockprobe.ServeTCP(l, name)
	ap := l.Addr().(*net.TCPAddr).AddrPort()
	return store.Backend{IP: ap.Addr().Unmap(), Port: ap.Port()}
}

// udpBackend binds ip:0 in ns and answers every datagram with name.
func udpBackend(t *testing.T, ns *netns, ip, name string) store.Backend {
	t.Helper()
	var c net.PacketConn
	if err := ns.do(func() (err error) { c, err = net.ListenPacket("udp4", ip+":0"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go sockprobe.ServeUDP(c.(*net.UDPConn), name)
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return store.Backend{IP: ap.Addr().Unmap(), Port: ap.Port()}
}

func svc(id uint32, name, vipPort, proto string, backends ...store.Backend) store.Service {
	ap := netip.MustParseAddrPort(vipPort)
	return store.Service{ID: id, Name: name, VIP: ap.Addr(), Port: ap.Port(), Protocol: proto,
		Backends: append([]store.Backend{}, backends...)}
}

func do(t *testing.T, p *sockprobe.Probe, req sockprobe.Request) []sockprobe.Result {
	t.Helper()
	resp, err := p.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Results
}

// tally counts replies by server name; failures count under "!" + errno.
func tally(rs []sockprobe.Result) map[string]int {
	m := map[string]int{}
	for _, r := range rs {
		if r.Err != "" {
			m["!"+r.Err]++
		} else {
			m[r.Reply]++
		}
	}
	return m
}

func show(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Services of TestSockLB.
const (
	vipWeb     = "198.18.100.1:80" // tcp: a, b, c
	vipAdmin   = "198.18.100.1:81" // tcp: e (same VIP, other port)
	vipDNS     = "198.18.100.1:53" // udp: u1, u2 (same VIP, other protocol)
	vipEmpty   = "198.18.100.2:80" // tcp, no backend
	vipEmptyU  = "198.18.100.2:53" // udp, no backend
	vipNoSvc   = "198.18.100.9:80" // not a service
	vipWebUDP  = "198.18.100.1:80" // udp to the tcp service's VIP:port: not a service
	maxRetries = 64
)

func TestSockLB(t *testing.T) {
	e := newLB(t)
	a := tcpBackend(t, e.node, "127.0.0.2", "a")
	b := tcpBackend(t, e.node, "127.0.0.3", "b")
	c := tcpBackend(t, e.node, "127.0.0.4", "c")
	adm := tcpBackend(t, e.node, "127.0.0.5", "e")
	plain := tcpBackend(t, e.node, "127.0.0.9", "plain")
	u1 := udpBackend(t, e.node, "127.0.0.2", "u1")
	u2 := udpBackend(t, e.node, "127.0.0.3", "u2")
	services := []store.Service{
		svc(1, "web", vipWeb, store.TCP, a, b, c),
		svc(2, "admin", vipAdmin, store.TCP, adm),
		svc(3, "dns", vipDNS, store.UDP, u1, u2),
		svc(4, "empty", vipEmpty, store.TCP),
		svc(5, "empty-udp", vipEmptyU, store.UDP),
	}
	e.reconcile(services...)
	p := e.probe(e.node)

	t.Run("spread", func(t *testing.T) {
		before := e.counters()
		const n = 300
		rs := do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb, N: n, StopOnError: true})
		got := tally(rs)
		// Each of 3 backends expects 100 of 300 (sd 8.2): 50 is 6 sd off.
		for _, name := range []string{"a", "b", "c"} {
			if got[name] < n/6 {
				t.Errorf("backend %s got %d of %d connects, want >= %d: %v", name, got[name], n, n/6, got)
			}
		}
		if got["a"]+got["b"]+got["c"] != n {
			t.Errorf("connects: %v, want %d answered by a, b, c", got, n)
		}
		after := e.counters()
		if d := after[cntConnectLB] - before[cntConnectLB]; d != n {
			t.Errorf("connect_lb counted %d, want %d", d, n)
		}
	})

	t.Run("getpeername shows the VIP", func(t *testing.T) {
		for _, r := range do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb, N: 10}) {
			if r.Err != "" || r.Peer != vipWeb {
				t.Errorf("connect to %s: %s", vipWeb, show(r))
			}
		}
	})

	t.Run("key is VIP, port and protocol", func(t *testing.T) {
		if got := tally(do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipAdmin, N: 20})); got["e"] != 20 {
			t.Errorf("%s: %v, want all 20 from e", vipAdmin, got)
		}
		// UDP to the TCP service's VIP:port is not balanced: no route.
		rs := do(t, p, sockprobe.Request{Op: sockprobe.OpUDP, Dst: vipWebUDP})
		if rs[0].Err != "ENETUNREACH" {
			t.Errorf("UDP to %s (a TCP service): %s, want ENETUNREACH (untouched)", vipWebUDP, show(rs[0]))
		}
	})

	t.Run("UDP replies come from the VIP", func(t *testing.T) {
		before := e.counters()
		const n = 100
		rs := do(t, p, sockprobe.Request{Op: sockprobe.OpUDP, Dst: vipDNS, N: n, StopOnError: true})
		for _, r := range rs {
			if r.Err != "" || r.From != vipDNS {
				t.Fatalf("unconnected UDP to %s: %s, want a reply from %s", vipDNS, show(r), vipDNS)
			}
		}
		// Unconnected: every datagram picks; 100 all on one is 2^-99.
		if got := tally(rs); got["u1"] == 0 || got["u2"] == 0 || got["u1"]+got["u2"] != n {
			t.Errorf("unconnected UDP to %s: %v, want both backends", vipDNS, got)
		}
		after := e.counters()
		if d := after[cntSendmsgLB] - before[cntSendmsgLB]; d != n {
			t.Errorf("sendmsg_lb counted %d, want %d", d, n)
		}
		if d := after[cntRevNAT] - before[cntRevNAT]; d < n {
			t.Errorf("revnat counted %d, want >= %d", d, n)
		}
		r := do(t, p, sockprobe.Request{Op: sockprobe.OpUDPConnected, Dst: vipDNS})[0]
		if r.Err != "" || r.Peer != vipDNS || r.From != vipDNS || (r.Reply != "u1" && r.Reply != "u2") {
			t.Errorf("connected UDP to %s: %s, want peer and source %s", vipDNS, show(r), vipDNS)
		}
	})

	t.Run("empty service refuses", func(t *testing.T) {
		before := e.counters()
		if r := do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipEmpty})[0]; r.Err != "ECONNREFUSED" {
			t.Errorf("TCP to the empty %s: %s, want ECONNREFUSED", vipEmpty, show(r))
		}
		if r := do(t, p, sockprobe.Request{Op: sockprobe.OpUDP, Dst: vipEmptyU})[0]; r.Err != "ECONNREFUSED" {
			t.Errorf("UDP to the empty %s: %s, want ECONNREFUSED", vipEmptyU, show(r))
		}
		if d := e.counters()[cntRefusedEmpty] - before[cntRefusedEmpty]; d != 2 {
			t.Errorf("refused_empty counted %d, want 2", d)
		}
	})

	t.Run("non-service untouched", func(t *testing.T) {
		before := e.counters()
		dst := netip.AddrPortFrom(plain.IP, plain.Port).String()
		r := do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: dst})[0]
		if r.Err != "" || r.Reply != "plain" || r.Peer != dst {
			t.Errorf("TCP to %s: %s, want plain's answer from %s", dst, show(r), dst)
		}
		// A VIP with no service has no route here: the connect reached
		// the stack as it was.
		if r := do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipNoSvc})[0]; r.Err != "ENETUNREACH" {
			t.Errorf("TCP to %s (no service): %s, want ENETUNREACH", vipNoSvc, show(r))
		}
		after := e.counters()
		for i, name := range counterNames {
			if after[i] != before[i] {
				t.Errorf("counter %s moved from %d to %d", name, before[i], after[i])
			}
		}
	})

	t.Run("outside the cgroup untouched", func(t *testing.T) {
		err := e.node.do(func() error {
			c, err := net.Dial("tcp4", vipWeb)
			if err == nil {
				c.Close()
				return fmt.Errorf("the test process (outside the cgroup) reached %s", vipWeb)
			}
			if !errors.Is(err, unix.ENETUNREACH) {
				return fmt.Errorf("dial %s from outside the cgroup: %v, want ENETUNREACH", vipWeb, err)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})

	t.Run("backend change", func(t *testing.T) {
		// A connection held open to c, then c removed from the service.
		var held sockprobe.Result
		for range maxRetries {
			held = do(t, p, sockprobe.Request{Op: sockprobe.OpOpen, Dst: vipWeb})[0]
			if held.Reply == "c" {
				break
			}
			do(t, p, sockprobe.Request{Op: sockprobe.OpClose, ID: held.ID})
		}
		if held.Reply != "c" {
			t.Fatalf("no connection to c in %d tries (1 in 3 each)", maxRetries)
		}
		services[0].Backends = []store.Backend{a, b}
		e.reconcile(services...)
		if got := tally(do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb, N: 100})); got["c"] != 0 || got["a"]+got["b"] != 100 {
			t.Errorf("after removing c: %v, want 100 connects on a and b only", got)
		}
		if r := do(t, p, sockprobe.Request{Op: sockprobe.OpEcho, ID: held.ID, Payload: "still there"})[0]; r.Err != "" || r.Reply != "still there" {
			t.Errorf("the connection to c after c's removal: %s", show(r))
		}
		do(t, p, sockprobe.Request{Op: sockprobe.OpClose, ID: held.ID})
		// Growing back: c gets connects again.
		services[0].Backends = []store.Backend{a, b, c}
		e.reconcile(services...)
		if got := tally(do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb, N: 60})); got["c"] == 0 {
			t.Errorf("after adding c back: %v, want c among them", got)
		}
	})

	t.Run("missing backend slot refuses", func(t *testing.T) {
		// The maps disagree (count 2, slot 1 absent): what a sync that
		// wrote in the wrong order would leave. The pick of slot 1 fails
		// cleanly rather than sending anywhere.
		key := serviceKey(services[1])
		if err := e.d.objs.LbServices.Put(key, sockLbLbService{Id: services[1].ID, Count: 2}); err != nil {
			t.Fatal(err)
		}
		before := e.counters()
		got := tally(do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipAdmin, N: 40}))
		if got["e"]+got["!ECONNREFUSED"] != 40 || got["!ECONNREFUSED"] == 0 || got["e"] == 0 {
			t.Errorf("connects with slot 1 missing: %v, want e and ECONNREFUSED only (2^-40 to miss either)", got)
		}
		if d := e.counters()[cntBackendMissing] - before[cntBackendMissing]; d != uint64(got["!ECONNREFUSED"]) {
			t.Errorf("backend_missing counted %d, want %d", d, got["!ECONNREFUSED"])
		}
		e.reconcile(services...) // repaired
		if got := tally(do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipAdmin, N: 20})); got["e"] != 20 {
			t.Errorf("after reconcile: %v", got)
		}
	})

	t.Run("service removed", func(t *testing.T) {
		e.reconcile(services[1:]...) // web gone
		if r := do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb})[0]; r.Err != "ENETUNREACH" {
			t.Errorf("TCP to the removed %s: %s, want ENETUNREACH", vipWeb, show(r))
		}
		e.reconcile(services...)
	})

	t.Run("hostNamespaceOnly", func(t *testing.T) {
		e.conf.HostNamespaceOnly = true
		defer func() { e.conf.HostNamespaceOnly = false; e.reconcile(services...) }()
		e.reconcile(services...) // in the node netns: its cookie is the host's
		pod := newNetns(t)
		pp := e.probe(pod)
		before := e.counters()
		if r := do(t, pp, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb})[0]; r.Err != "ENETUNREACH" {
			t.Errorf("TCP to %s from another netns: %s, want ENETUNREACH (not balanced)", vipWeb, show(r))
		}
		if r := do(t, pp, sockprobe.Request{Op: sockprobe.OpUDP, Dst: vipDNS})[0]; r.Err != "ENETUNREACH" {
			t.Errorf("UDP to %s from another netns: %s, want ENETUNREACH (not balanced)", vipDNS, show(r))
		}
		if d := e.counters()[cntSkippedNetns] - before[cntSkippedNetns]; d != 2 {
			t.Errorf("skipped_netns counted %d, want 2", d)
		}
		if r := do(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: vipWeb})[0]; r.Err != "" || r.Peer != vipWeb {
			t.Errorf("TCP to %s from the node netns: %s, want balanced", vipWeb, show(r))
		}
	})
}
