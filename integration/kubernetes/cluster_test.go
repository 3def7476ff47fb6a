package kubernetes

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/kubetest"
	"github.com/braid-cni/braid/internal/sockprobe"
	"github.com/braid-cni/braid/internal/testenv"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The API server as the nodes reach it: an address on the underlay bridge
// (a control-plane node's), forwarded to the suite's API server on
// loopback (kubetest.Proxy).
var apiAddr = netip.MustParsePrefix("198.18.0.254/24")

const apiPort = 6443

// metricsAddr is every agent's /metrics and /healthz, on its node's loopback.
const metricsAddr = "127.0.0.1:9962"

// bound is issue 16's time from an API write to traffic following it.
func bound(t *testing.T) time.Duration {
	return testenv.EnvDuration(t, "BRAID_K8S_BOUND", time.Second)
}

// cluster is one test's netns nodes, each a Node object of the suite's API
// server with its agent in kubernetes mode, and an outside client.
type cluster struct {
	cp         *kubetest.Cluster
	topo       *harness.Topology
	ns         string // the test's namespace: its Services and slices
	nodes      []*node
	client     *harness.Host
	kubeconfig string // the manifest's ServiceAccount, via the underlay
	spawn      spawner
}

type node struct {
	*harness.Node
	k8sName string // its Node object
	chain   *harness.Chain
	agent   *exec.Cmd
	done    chan struct{} // closed when the agent exits
}

// newCluster builds n nodes on conflist, creates their Node objects
// (spec.podCIDR, InternalIP, Ready, as kube-controller-manager and a
// kubelet would) and starts their agents.
func newCluster(t *testing.T, conflist string, n int) *cluster {
	t.Helper()
	harness.RequireRoot(t, "nsenter")
	cp := controlPlane(t)
	spawn := newSpawner(t) // first: its cleanup runs last
	c := &cluster{cp: cp, topo: harness.New(t), spawn: spawn}
	c.ns = namespace(t, cp, c.topo.Name)
	t.Cleanup(func() { c.deleteObjects(t) })
	c.serveAPI(t)
	c.kubeconfig = filepath.Join(c.topo.Dir, "braid.kubeconfig")
	agentKubeconfig(t, cp, c.kubeconfig, fmt.Sprintf("https://%s:%d", apiAddr.Addr(), apiPort))
	for range n {
		hn := c.topo.AddNode(t, harness.WithoutInit())
		nd := &node{Node: hn, k8sName: c.topo.Name + "-" + hn.Name}
		nd.chain = hn.Conflist(t, conflist, hn.SockLB(t, nil))
		c.createNode(t, nd)
		c.nodes = append(c.nodes, nd)
	}
	c.client = c.topo.AddClient(t, 1)
	for _, nd := range c.nodes {
		c.startAgent(t, nd)
	}
	for _, nd := range c.nodes {
		nd.waitRegistered(t)
	}
	return c
}

// serveAPI puts apiAddr on the underlay bridge and forwards it to the API
// server until the test ends.
func (c *cluster) serveAPI(t *testing.T) {
	t.Helper()
	err := c.topo.Underlay.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			return err
		}
		br, err := netlink.LinkByName("br0")
		if err != nil {
			return err
		}
		return netlink.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: apiAddr.Addr().AsSlice(), Mask: net.CIDRMask(apiAddr.Bits(), 32)}})
	})
	if err != nil {
		t.Fatalf("API server address on the underlay: %v", err)
	}
	l := c.topo.Underlay.Listen(t, fmt.Sprintf("%s:%d", apiAddr.Addr(), apiPort))
	t.Cleanup(c.cp.Proxy(l))
}

// createNode creates nd's Node object, replacing a crashed run's.
func (c *cluster) createNode(t *testing.T, nd *node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nodes := c.cp.Client.CoreV1().Nodes()
	if err := nodes.Delete(ctx, nd.k8sName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	obj, err := nodes.Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: nd.k8sName},
		Spec:       corev1.NodeSpec{PodCIDR: nd.PodCIDR.String(), PodCIDRs: []string{nd.PodCIDR.String()}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := nodes.Delete(ctx, nd.k8sName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete node %s: %v", nd.k8sName, err)
		}
	})
	obj.Status = corev1.NodeStatus{
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nd.IP.String()}, {Type: corev1.NodeHostName, Address: nd.k8sName}},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
	}
	if _, err := nodes.UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// deleteObjects deletes the test's Services and EndpointSlices: nothing
// else would (no namespace controller runs), and every agent of later tests
// would follow them.
func (c *cluster) deleteObjects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	svcs, err := c.cp.Client.CoreV1().Services(c.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Errorf("list services: %v", err)
		return
	}
	for _, s := range svcs.Items {
		if err := c.cp.Client.CoreV1().Services(c.ns).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete service %s: %v", s.Name, err)
		}
	}
	if err := c.cp.Client.DiscoveryV1().EndpointSlices(c.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Errorf("delete endpointslices: %v", err)
	}
}

// startAgent runs `braid agent --datastore kubernetes` as the manifest's
// ServiceAccount in the node's netns; its node IP comes from the Node's
// InternalIP (no --node-ip).
func (c *cluster) startAgent(t *testing.T, nd *node) {
	t.Helper()
	repo, err := harness.Repo()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(repo, "bin")
	log, err := os.OpenFile(filepath.Join(nd.Dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	nd.agent = exec.Command("nsenter", "--net="+nd.Path, filepath.Join(bin, "braid"), "agent",
		"--datastore", "kubernetes", "--kubeconfig", c.kubeconfig, "--name", nd.k8sName,
		"--device", harness.NodeDevice, "--conflist", nd.chain.File,
		"--cni-path", bin+":"+filepath.Join(bin, "tools", "cni"),
		"--metrics-address", metricsAddr,
		"--resync-interval", "5s", "--gc-interval", "2s", "--status-interval", "500ms",
		"--state-dir", nd.StateDir, "--bpf-root", nd.BPFRoot)
	nd.agent.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	nd.agent.Stdout, nd.agent.Stderr = log, log
	if err := c.spawn.start(nd.agent); err != nil {
		t.Fatalf("start agent on %s: %v", nd.Name, err)
	}
	nd.done = make(chan struct{})
	cmd, done := nd.agent, nd.done
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		nd.stopAgent(t)
		if t.Failed() {
			nd.agentLogTail(t)
		}
	})
}

// stopAgent stops the agent as the kubelet would (SIGTERM) and waits.
func (nd *node) stopAgent(t *testing.T) {
	t.Helper()
	select {
	case <-nd.done:
		return
	default:
	}
	_ = nd.agent.Process.Signal(syscall.SIGTERM)
	select {
	case <-nd.done:
	case <-time.After(10 * time.Second):
		t.Errorf("agent on %s did not stop within 10s of SIGTERM", nd.Name)
		_ = nd.agent.Process.Kill()
		<-nd.done
	}
}

func (nd *node) running() bool {
	select {
	case <-nd.done:
		return false
	default:
		return true
	}
}

func (nd *node) agentLogTail(t *testing.T) {
	b, _ := os.ReadFile(filepath.Join(nd.Dir, "agent.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	t.Logf("last lines of %s's agent.log:\n%s", nd.Name, strings.Join(lines[max(0, len(lines)-40):], "\n"))
}

// waitRegistered waits until the agent has written its Node's pod CIDR and
// InternalIP into the node store.
func (nd *node) waitRegistered(t *testing.T) {
	t.Helper()
	var last error
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if !nd.running() {
			t.Fatalf("the agent on %s exited", nd.Name)
		}
		last = nd.registered(t)
		if last == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s's agent did not take its Node's identity within 30s: %v", nd.Name, last)
}

func (nd *node) registered(t *testing.T) error {
	// The agent serves HTTP once it has made the node store.
	if _, _, err := nd.httpGet("/healthz"); err != nil {
		return err
	}
	out, err := nd.TryBraid(t, "status", "-o", "json")
	if err != nil {
		return err
	}
	var s struct {
		Node *struct {
			Name    string       `json:"name"`
			NodeIP  netip.Addr   `json:"nodeIP"`
			PodCIDR netip.Prefix `json:"podCIDR"`
		} `json:"node"`
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return err
	}
	if s.Node == nil || s.Node.PodCIDR != nd.PodCIDR || s.Node.NodeIP != nd.IP {
		return fmt.Errorf("braid status: %s", out)
	}
	return nil
}

// httpGet fetches path from the node's agent, from inside its netns.
func (nd *node) httpGet(path string) (int, []byte, error) {
	var conn net.Conn
	err := nd.Do(func() (err error) {
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

// spawner starts processes from one OS thread that lives as long as the
// test: the parent-death signal follows the thread that forked, and Go ends
// threads (the harness's netns threads) that a goroutine left locked.
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

// backend is a pod on node i (1-based) greeting with its name on each port.
func (c *cluster) backend(t *testing.T, i int, name string, ports ...int) *harness.Pod {
	t.Helper()
	p := c.nodes[i-1].chain.AddPod(t, name)
	for _, port := range ports {
		p.ServeTCP(t, fmt.Sprintf(":%d", port), name)
	}
	return p
}

// service creates a Service in the test's namespace.
func (c *cluster) service(t *testing.T, s *corev1.Service) *corev1.Service {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := c.cp.Client.CoreV1().Services(c.ns).Create(ctx, s, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service %s: %v", s.Name, err)
	}
	return out
}

// tcpPorts are Service ports, "name:port:targetPort" each (the target a
// number or a port name).
func tcpPorts(specs ...string) []corev1.ServicePort {
	var ps []corev1.ServicePort
	for _, s := range specs {
		f := strings.Split(s, ":")
		var port int32
		fmt.Sscan(f[1], &port)
		ps = append(ps, corev1.ServicePort{Name: f[0], Protocol: corev1.ProtocolTCP, Port: port, TargetPort: intstr.Parse(f[2])})
	}
	return ps
}

// ep is an endpoint of a hand-made slice.
type ep struct {
	pod         *harness.Pod
	node        *node
	ready       bool
	serving     bool
	terminating bool
}

func readyEP(p *harness.Pod, n *node) ep { return ep{pod: p, node: n, ready: true, serving: true} }

// slicePort is a port of a slice: the Service port's name and the port
// the endpoints listen on.
type slicePort struct {
	name string
	port int32
}

// putSlice creates or replaces EndpointSlice name of Service svc, as the
// EndpointSlice controller (or a user's controller) would write it.
func (c *cluster) putSlice(t *testing.T, svc, name string, ports []slicePort, eps ...ep) {
	t.Helper()
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.ns, Labels: map[string]string{
			discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: "braid-test"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{},
	}
	for _, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: &p.name, Port: &p.port, Protocol: ptr(corev1.ProtocolTCP)})
	}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{e.pod.IP.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(e.ready), Serving: ptr(e.serving),
				Terminating: ptr(e.terminating)},
			NodeName: ptr(e.node.k8sName),
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	slices := c.cp.Client.DiscoveryV1().EndpointSlices(c.ns)
	cur, err := slices.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = slices.Create(ctx, s, metav1.CreateOptions{})
	case err == nil:
		s.ResourceVersion = cur.ResourceVersion
		_, err = slices.Update(ctx, s, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("put endpointslice %s: %v", name, err)
	}
}

func ptr[T any](v T) *T { return &v }

// probe is a client process in pod p on node nd (its netns, the node's
// cgroup: sock-lb balances its sockets).
func probe(t *testing.T, nd *node, p *harness.Pod) *sockprobe.Probe {
	return nd.Probe(t, p.NS)
}

// answers connects n times from p to dst and tallies who answered (or the
// error: "!ECONNREFUSED").
func answers(t *testing.T, p *sockprobe.Probe, dst netip.AddrPort, n int) map[string]int {
	t.Helper()
	return harness.Tally(harness.ProbeDo(t, p, sockprobe.Request{Op: sockprobe.OpTCP, Dst: dst.String(), N: n, Timeout: attemptTimeout}))
}

// attemptTimeout bounds each connection of a check: one started just
// before the datapath changed must not hold the check for seconds.
const attemptTimeout = 250 * time.Millisecond

// within retries check until it passes, failing t unless the passing
// round started within bound of since (the API write that should cause
// it): a round's attempts see the datapath as it is when they run.
func within(t *testing.T, since time.Time, what string, check func() error) {
	t.Helper()
	b := bound(t)
	var err error
	for {
		round := time.Now()
		if err = check(); err == nil {
			d := round.Sub(since)
			if d > b {
				t.Fatalf("%s: only %v after the API write, want within %v", what, d.Round(time.Millisecond), b)
			}
			t.Logf("%s: %v after the API write", what, d.Round(time.Millisecond))
			return
		}
		if time.Since(since) > b {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v of the API write: %v", what, b, err)
}

// exactly is a check that p's connections to dst are answered by the
// named backends only, each at least once (or, with "!ECONNREFUSED", all
// refused).
func exactly(t *testing.T, p *sockprobe.Probe, dst netip.AddrPort, want ...string) func() error {
	return func() error {
		got := answers(t, p, dst, 3*len(want)+3)
		keys := make([]string, 0, len(got))
		for k := range got {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		w := slices.Sorted(slices.Values(want))
		if !slices.Equal(keys, w) {
			return fmt.Errorf("%s answered by %v, want %v", dst, got, w)
		}
		return nil
	}
}

// unanswered is a check that no backend answers p's connections to dst.
func unanswered(t *testing.T, p *sockprobe.Probe, dst netip.AddrPort) func() error {
	return func() error {
		for k, n := range answers(t, p, dst, 2) {
			if !strings.HasPrefix(k, "!") {
				return fmt.Errorf("%s answered %d times by %s", dst, n, k)
			}
		}
		return nil
	}
}

// greet connects from ns to dst and returns the first line the server
// sends (its name).
func greet(ns *harness.NS, dst netip.AddrPort) (string, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp4", dst.String(), attemptTimeout)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(attemptTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// clusterIP is the Service's ClusterIP and port.
func clusterIP(s *corev1.Service, port int32) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(s.Spec.ClusterIP), uint16(port))
}
