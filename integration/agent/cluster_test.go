// Package agent is braid agent's integration suite: a real etcd (Debian's
// etcd-server) on the underlay at 198.18.0.254, three nodes whose agents
// claim their pod CIDRs and learn each other from it (no `braid node add`),
// and real traffic between pods, to services, through agent and plugin
// restarts and an etcd outage.
package agent

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Addresses: etcd on the underlay, the cluster CIDR the agents carve /24s
// from, the service VIPs.
var (
	etcdAddr    = netip.MustParsePrefix("198.18.0.254/24")
	clusterCIDR = netip.MustParsePrefix("198.19.0.0/16")
	etcdURL     = "http://" + etcdAddr.Addr().String() + ":2379"
)

// leaseTTL is short so that a stopped agent's node leaves within seconds.
const leaseTTL = 3 * time.Second

// metricsAddr is every agent's /metrics and /healthz, on its node's loopback.
const metricsAddr = "127.0.0.1:9962"

// cgroupParent holds the nodes' cgroups: sock-lb balances the sockets of
// the processes in a node's cgroup, so each node gets its own.
const cgroupParent = "/sys/fs/cgroup/unified"

type cluster struct {
	topo  *harness.Topology
	etcd  *etcd
	nodes []*node
	repo  string
	spawn spawner
}

// node is a harness node run by braid agent.
type node struct {
	*harness.Node
	chain  *harness.Chain
	cgroup string
	agent  *exec.Cmd
	done   chan struct{} // closed when the agent exits
	bin    string        // where its agent finds the plugins; empty: the repository's bin/
}

// newCluster builds the underlay with etcd and n nodes with the conflist,
// and starts every agent at once (they race for pod CIDRs).
func newCluster(t *testing.T, conflist string, n int) *cluster {
	t.Helper()
	harness.RequireRoot(t, "etcd", "ping")
	if _, err := os.Stat(filepath.Join(cgroupParent, "cgroup.procs")); err != nil {
		t.Fatalf("no cgroup v2 hierarchy at %s: %v", cgroupParent, err)
	}
	repo, err := harness.Repo()
	if err != nil {
		t.Fatal(err)
	}
	spawn := newSpawner(t) // first: its cleanup runs last
	c := &cluster{topo: harness.New(t), repo: repo, spawn: spawn}
	c.etcd = startEtcd(t, c.topo, spawn)
	for range n {
		hn := c.topo.AddNode(t, harness.WithoutInit())
		nd := &node{Node: hn, cgroup: filepath.Join(cgroupParent, c.topo.Name+"-"+hn.Name)}
		if err := os.Mkdir(nd.cgroup, 0o755); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
		// Registered after the topology's teardown, so it runs before it;
		// the pod processes are gone by then.
		t.Cleanup(func() { _ = os.Remove(nd.cgroup) })
		nd.chain = hn.Conflist(t, conflist, cgroupRoot(nd.cgroup))
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		c.startAgent(t, nd)
	}
	for _, nd := range c.nodes {
		nd.waitRegistered(t)
	}
	return c
}

// cgroupRoot points sock-lb (only it has the key) at the node's cgroup.
func cgroupRoot(dir string) harness.Edit {
	return func(list map[string]any) {
		plugins, _ := list["plugins"].([]any)
		for _, p := range plugins {
			if m, ok := p.(map[string]any); ok && m["type"] == "sock-lb" {
				m["cgroupRoot"] = dir
			}
		}
	}
}

// etcd is a single-member etcd in the underlay netns.
type etcd struct {
	ns    *harness.NS
	dir   string
	cmd   *exec.Cmd
	done  chan struct{}
	spawn spawner
}

func startEtcd(t *testing.T, topo *harness.Topology, spawn spawner) *etcd {
	t.Helper()
	err := topo.Underlay.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		br, err := netlink.LinkByName("br0")
		if err != nil {
			return err
		}
		return netlink.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: etcdAddr.Addr().AsSlice(), Mask: net.CIDRMask(etcdAddr.Bits(), 32)}})
	})
	if err != nil {
		t.Fatalf("etcd address on the underlay: %v", err)
	}
	e := &etcd{ns: topo.Underlay, dir: filepath.Join(topo.Dir, "etcd"), spawn: spawn}
	e.start(t)
	t.Cleanup(func() { e.stop(t) })
	return e
}

// start runs etcd on its data dir (kept across restarts).
func (e *etcd) start(t *testing.T) {
	t.Helper()
	log, err := os.OpenFile(e.dir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	e.cmd = inNetns(e.ns, "etcd", "--name", "ba", "--data-dir", e.dir, "--logger", "zap",
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "ba=http://127.0.0.1:2380")
	e.cmd.Stdout, e.cmd.Stderr = log, log
	if err := e.spawn.start(e.cmd); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	e.done = make(chan struct{})
	go func() { _ = e.cmd.Wait(); close(e.done) }()
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(e.dir + ".log")
			t.Logf("etcd.log:\n%s", b[max(0, len(b)-3000):])
		}
	})
	waitFor(t, 10*time.Second, "etcd to answer", func() error {
		c, err := net.DialTimeout("tcp", etcdAddr.Addr().String()+":2379", time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}, e.ns)
}

// inNetns is a command run in ns through nsenter (which execs it, keeping
// the pid), killed if the thread that starts it (see spawner) ends.
func inNetns(ns *harness.NS, name string, args ...string) *exec.Cmd {
	cmd := exec.Command("nsenter", append([]string{"--net=" + ns.Path, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// spawner starts processes from one OS thread that lives as long as the
// test: the parent-death signal follows the thread that forked, and Go ends
// threads (the harness's netns threads, say) that any goroutine may have
// run on. When the test ends the thread goes, and whatever the cleanups did
// not stop with it.
type spawner chan func()

func newSpawner(t *testing.T) spawner {
	s := make(spawner)
	go func() {
		runtime.LockOSThread()
		for fn := range s {
			fn()
		}
	}()
	t.Cleanup(func() { close(s) })
	return s
}

func (s spawner) start(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	s <- func() { errc <- cmd.Start() }
	return <-errc
}

// kill stops etcd at once, as a crash would.
func (e *etcd) kill(t *testing.T) {
	t.Helper()
	_ = e.cmd.Process.Signal(syscall.SIGKILL)
	<-e.done
}

func (e *etcd) stop(t *testing.T) {
	select {
	case <-e.done:
	default:
		e.kill(t)
	}
}

// startAgent runs braid agent with etcd in the node's netns.
func (c *cluster) startAgent(t *testing.T, n *node) {
	t.Helper()
	c.startAgentWith(t, n, "--datastore", "etcd", "--etcd-endpoints", etcdURL, "--cluster-cidr", clusterCIDR.String(),
		"--lease-ttl", leaseTTL.String())
}

// startAgentWith runs braid agent with the node's paths and more args in
// the node's netns, logging to agent.log.
func (c *cluster) startAgentWith(t *testing.T, n *node, args ...string) {
	t.Helper()
	log, err := os.OpenFile(filepath.Join(n.Dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	bin := filepath.Join(c.repo, "bin")
	n.agent = inNetns(n.NS, filepath.Join(bin, "braid"), append([]string{"agent",
		"--name", n.Name, "--node-ip", n.IP.String(), "--device", harness.NodeDevice,
		"--conflist", n.chain.File, "--cni-path", n.binDir() + ":" + filepath.Join(bin, "tools", "cni"),
		"--metrics-address", metricsAddr,
		"--resync-interval", "5s", "--gc-interval", "2s", "--status-interval", "500ms",
		"--state-dir", n.StateDir, "--bpf-root", n.BPFRoot}, args...)...)
	n.agent.Stdout, n.agent.Stderr = log, log
	if err := c.spawn.start(n.agent); err != nil {
		t.Fatalf("start agent on %s: %v", n.Name, err)
	}
	n.done = make(chan struct{})
	cmd, done := n.agent, n.done
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		n.stopAgent(t)
		if t.Failed() {
			n.logTail(t)
		}
	})
}

// stopAgent stops the agent as systemd would (SIGTERM) and waits for it.
func (n *node) stopAgent(t *testing.T) {
	t.Helper()
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.agent.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		t.Errorf("agent on %s did not stop within 10s of SIGTERM", n.Name)
		_ = n.agent.Process.Kill()
		<-n.done
	}
}

func (n *node) running() bool {
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

func (n *node) logTail(t *testing.T) {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "agent.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	t.Logf("last lines of %s's agent.log:\n%s", n.Name, strings.Join(lines[max(0, len(lines)-40):], "\n"))
}

// status is the part of `braid status -o json` this suite reads.
type status struct {
	Node *struct {
		Name    string       `json:"name"`
		PodCIDR netip.Prefix `json:"podCIDR"`
	} `json:"node"`
}

// waitRegistered waits for the agent to write the identity it registered
// (with the pod CIDR it claimed) into the node store.
func (n *node) waitRegistered(t *testing.T) {
	t.Helper()
	waitFor(t, 15*time.Second, n.Name+"'s agent to register", func() error {
		if !n.running() {
			return fmt.Errorf("agent exited")
		}
		// The agent serves HTTP once it has created the node store: two
		// first opens of a store at once are not safe.
		if _, _, err := n.httpGet("/healthz"); err != nil {
			return err
		}
		out, err := n.TryBraid(t, "status", "-o", "json")
		if err != nil {
			return err
		}
		var s status
		if err := json.Unmarshal(out, &s); err != nil {
			return err
		}
		if s.Node == nil || !s.Node.PodCIDR.IsValid() {
			return fmt.Errorf("no identity yet")
		}
		n.PodCIDR = s.Node.PodCIDR
		return nil
	}, nil)
}

// braidEtcd runs a braid command against etcd from node n.
func (n *node) braidEtcd(t *testing.T, args ...string) []byte {
	t.Helper()
	return n.Braid(t, append(args, "--etcd-endpoints", etcdURL)...)
}

// waitFor retries fn (inside ns when given) until it succeeds or timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, fn func() error, ns *harness.NS) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		var err error
		if ns != nil {
			err = ns.Do(fn)
		} else {
			err = fn()
		}
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("waited %s for %s: %v", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// httpGet fetches path from the node's agent, from inside its netns (the
// socket is made on a thread in the netns; http.Transport would dial from
// another goroutine).
func (n *node) httpGet(path string) (int, []byte, error) {
	var conn net.Conn
	err := n.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", metricsAddr, 2*time.Second)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: agent\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// pluginPid is the pid of the node agent's server of plugin (0 if none).
func (n *node) pluginPid(t *testing.T, plugin string) int {
	t.Helper()
	want, _ := filepath.Abs(filepath.Join(n.binDir(), plugin))
	for _, pid := range harness.Children(n.agent.Process.Pid) {
		if exe, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe")); exe == want {
			return pid
		}
	}
	return 0
}

func (n *node) binDir() string {
	if n.bin != "" {
		return n.bin
	}
	repo, _ := harness.Repo()
	return filepath.Join(repo, "bin")
}

// backend is an echo server in a pod that answers with its pod's name.
func backend(t *testing.T, p *harness.Pod, port int) {
	t.Helper()
	l := p.Listen(t, fmt.Sprintf(":%d", port))
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			fmt.Fprint(c, p.ContainerID)
			c.Close()
		}
	}()
}

// dialInCgroup connects to dst from a process in pod's netns that runs in
// the node's cgroup, as the pod's containers would, and returns what the
// server sent. The process is this test binary (see TestMain).
func (n *node) dialInCgroup(p *harness.Pod, dst netip.AddrPort) (string, error) {
	cg, err := os.Open(n.cgroup)
	if err != nil {
		return "", err
	}
	defer cg.Close()
	cmd := exec.Command(os.Args[0], dst.String())
	cmd.Env = append(os.Environ(), helperEnv+"=dial")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := p.Do(cmd.Run); err != nil {
		return "", fmt.Errorf("dial %s from %s: %v: %s", dst, p.Name, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out.String(), nil
}

// helperEnv makes the test binary a helper process instead of a test run.
const helperEnv = "BRAID_AGENT_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "dial" {
		os.Exit(dialHelper(os.Args[1]))
	}
	os.Exit(m.Run())
}

func dialHelper(dst string) int {
	c, err := net.DialTimeout("tcp4", dst, 2*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Stdout.Write(b)
	return 0
}

// blockEtcd cuts the node off from etcd both ways (blackhole routes in
// the node to etcd and in etcd's netns to the node), or lets it through
// again; pod traffic between nodes crosses the bridge and is not affected.
// A block is lifted when the test ends in any case.
func (n *node) blockEtcd(t *testing.T, c *cluster, block bool) {
	t.Helper()
	route := func(dst netip.Addr) *netlink.Route {
		return &netlink.Route{Dst: &net.IPNet{IP: dst.AsSlice(), Mask: net.CIDRMask(32, 32)}, Type: unix.RTN_BLACKHOLE}
	}
	edit := func(ns *harness.NS, r *netlink.Route, block bool) error {
		return ns.Do(func() error {
			if block {
				return netlink.RouteAdd(r)
			}
			if err := netlink.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
				return err
			}
			return nil
		})
	}
	err := errors.Join(edit(n.NS, route(etcdAddr.Addr()), block), edit(c.etcd.ns, route(n.IP), block))
	if err != nil {
		t.Fatalf("blackhole etcd on %s (%v): %v", n.Name, block, err)
	}
	if block {
		t.Cleanup(func() { n.blockEtcd(t, c, false) })
	}
}

// waitServiceMap polls sock-lb's pinned service map on n until it holds vip
// (TCP) with backends backends, and returns how long after start that was
// (timeout when it never did). Safe to run in its own goroutine.
func (n *node) waitServiceMap(t *testing.T, start time.Time, vip netip.AddrPort, backends int, timeout time.Duration) time.Duration {
	key := make([]byte, 8) // struct lb_service_key: vip and port in network order, proto
	copy(key, vip.Addr().AsSlice())
	binary.BigEndian.PutUint16(key[4:], vip.Port())
	key[6] = syscall.IPPROTO_TCP
	var m *ebpf.Map
	defer func() { _ = m.Close() }()
	for time.Since(start) < timeout {
		var err error
		if m == nil {
			m, err = ebpf.LoadPinnedMap(n.PinPath("sock-lb", "lb_services"), &ebpf.LoadPinOptions{ReadOnly: true})
		}
		var val []byte // struct lb_service: id, count
		if err == nil && m.Lookup(key, &val) == nil && binary.NativeEndian.Uint32(val[4:]) == uint32(backends) {
			d := time.Since(start)
			t.Logf("%s: %s with %d backends in sock-lb's service map %v after braid service add started", n.Name, vip, backends, d.Round(time.Millisecond))
			return d
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Errorf("%s: %s not in sock-lb's service map with %d backends within %v", n.Name, vip, backends, timeout)
	return timeout
}
