package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
	"github.com/braid-cni/braid/internal/kubetest"
	"github.com/braid-cni/braid/internal/testenv"
	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// Everything the bench makes is named or placed so that kit.Lab.Sweep
// finds it again after a crash; kube-proxy's rules live inside bk-* netns.
const (
	nsPrefix    = "bk-"
	labRoot     = "/run/braid-bench-kubeproxy"
	cgroupBase  = "/sys/fs/cgroup/unified/braid-bench-kubeproxy"
	underlayNS  = nsPrefix + "u"
	device      = "eth0"
	apiIP       = "198.18.0.254" // the underlay bridge's address: the API server, through kubetest's Proxy
	apiPort     = 6443
	clusterCIDR = "198.19.0.0/16"
	serviceCIDR = "198.18.128.0/17" // ClusterIPs: virtual, inside the harness's range
)

var footprint = kit.Lab{Prefix: nsPrefix, Root: labRoot, Cgroup: cgroupBase}

var (
	baseSysctls = []string{"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
		"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"}
	nodeSysctls = append([]string{"net.ipv4.ip_forward=1"}, baseSysctls...)
	podSysctls  = append([]string{"net.ipv4.ip_forward=0"}, baseSysctls...)
)

// node is a netns on the underlay (eth0 198.18.0.<index>, pods
// 198.19.<index>.0/24) with its service proxy: braid's agent (kind
// "braid") or kube-proxy in mode kind ("iptables", "nftables").
type node struct {
	name            string
	index           int
	kind            string
	proc            *exec.Cmd // the agent or kube-proxy
	client, backend *pod
}

func (n *node) netns() string   { return nsPrefix + "n-" + n.name }
func (n *node) k8sName() string { return nsPrefix + n.name }
func (n *node) ip() string      { return fmt.Sprintf("198.18.0.%d", n.index) }
func (n *node) podCIDR() string { return fmt.Sprintf("198.19.%d.0/24", n.index) }
func (n *node) dir() string     { return filepath.Join(labRoot, n.name) }
func (n *node) bpfRoot() string { return filepath.Join(n.dir(), "bpf") }
func (n *node) state() string   { return filepath.Join(n.dir(), "state") }
func (n *node) cgroup() string  { return filepath.Join(cgroupBase, n.name) }
func (n *node) braid() bool     { return n.kind == "braid" }
func (n *node) network() string { return nsPrefix + n.name }
func (n *node) title() string {
	if n.braid() {
		return "braid sock-lb"
	}
	return "kube-proxy " + n.kind
}

type pod struct {
	node *node
	ns   string
	ip   string
}

// in is where the pod's processes run: its netns, and on the braid node
// its cgroup (sock-lb's cgroupRoot), as a runtime would put them.
func (p *pod) in(cpu string) kit.In {
	in := kit.In{NS: p.ns, CPUs: cpu}
	if p.node.braid() {
		in.Cgroup = p.node.cgroup()
	}
	return in
}

type lab struct {
	repo, confDir, kubeconfig string
}

func newLab(repo string) (*lab, error) {
	if err := kit.CheckSetup(repo, []string{"bin/braid", "bin/veth-ebpf", "bin/sock-lb", "bin/dsr", "bin/native-route",
		"bin/tools/cnitool", "bin/tools/cni/ptp", "bin/tools/cni/host-local"},
		[]string{"ip", "nsenter", "taskset", "sockperf", "sysctl", "iptables-save", "nft", "etcd"}); err != nil {
		return nil, err
	}
	if testenv.Cgroup2() != filepath.Dir(cgroupBase) {
		return nil, fmt.Errorf("no cgroup v2 mount at %s", filepath.Dir(cgroupBase))
	}
	l := &lab{repo: repo, confDir: filepath.Join(labRoot, "net.d"), kubeconfig: filepath.Join(labRoot, "kubeconfig")}
	for _, dir := range []string{l.confDir, cgroupBase} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	kit.UseCNI(repo, l.confDir, device)
	return l, nil
}

func addNetns(ctx context.Context, name string, sysctls []string) error {
	if err := kit.Sh(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	return inNS(ctx, name, [][]string{{"ip", "link", "set", "lo", "up"}, append([]string{"sysctl", "-q", "-w"}, sysctls...)})
}

// inNS runs short commands in netns ns, in order.
func inNS(ctx context.Context, netns string, cmds [][]string) error {
	for _, c := range cmds {
		if _, err := kit.NS(netns).Run(ctx, time.Minute, c[0], c[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// makeUnderlay creates the bridge with the API server's address on it, and
// a listener there in the underlay's netns.
func makeUnderlay(ctx context.Context) (net.Listener, error) {
	if err := addNetns(ctx, underlayNS, append(podSysctls, "net.bridge.bridge-nf-call-iptables=0")); err != nil {
		return nil, err
	}
	err := inNS(ctx, underlayNS, [][]string{{"ip", "link", "add", "br0", "type", "bridge"},
		{"ip", "addr", "add", apiIP + "/24", "dev", "br0"}, {"ip", "link", "set", "br0", "up"}})
	if err != nil {
		return nil, err
	}
	var l net.Listener
	err = ns.WithNetNSPath(kit.NSPath(underlayNS), func(ns.NetNS) error {
		var err error
		l, err = net.Listen("tcp", fmt.Sprintf("%s:%d", apiIP, apiPort))
		return err
	})
	return l, err
}

// addNode creates n on the underlay, its conflist, and for braid its
// bpffs and cgroup (the agent writes the node store: no `braid node init`).
func (l *lab) addNode(ctx context.Context, n *node) error {
	if err := addNetns(ctx, n.netns(), nodeSysctls); err != nil {
		return err
	}
	err := inNS(ctx, underlayNS, [][]string{
		{"ip", "link", "add", n.name, "type", "veth", "peer", "name", device, "netns", n.netns()},
		{"ip", "link", "set", n.name, "master", "br0", "up"}})
	if err == nil {
		// The route to the ClusterIPs stands for a node's default route:
		// without one, a connection to a Service kube-proxy rejects would
		// never reach the FORWARD chain that rejects it.
		err = inNS(ctx, n.netns(), [][]string{{"ip", "addr", "add", n.ip() + "/24", "dev", device}, {"ip", "link", "set", device, "up"},
			{"ip", "route", "add", serviceCIDR, "dev", device}})
	}
	if err != nil {
		return err
	}
	var conf []byte
	if n.braid() {
		for _, dir := range []string{n.bpfRoot(), n.cgroup()} {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
		}
		if err := unix.Mount("bpffs", n.bpfRoot(), "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs on %s: %w", n.bpfRoot(), err)
		}
		conf, err = kit.ChainConflist(l.repo, "native-lb.conflist", n.network(), func(p map[string]any) {
			p["stateDir"], p["bpfRoot"], p["logFile"] = n.state(), n.bpfRoot(), filepath.Join(n.dir(), "cni.log")
			if p["type"] == "sock-lb" {
				p["cgroupRoot"] = n.cgroup()
			}
		})
	} else {
		conf, err = json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": n.network(), "plugins": []any{
			map[string]any{"type": "ptp", "mtu": 1500, "ipam": map[string]any{
				"type": "host-local", "ranges": [][]map[string]string{{{"subnet": n.podCIDR()}}},
				"routes": []map[string]string{{"dst": "0.0.0.0/0"}}, "dataDir": filepath.Join(n.dir(), "ipam")}}}})
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(n.dir(), 0o700); err != nil {
		return err
	}
	return os.WriteFile(l.conflist(n), conf, 0o600)
}

func (l *lab) conflist(n *node) string { return filepath.Join(l.confDir, n.network()+".conflist") }

// startProxy starts n's service proxy in its netns: braid's agent
// following the API server, or kube-proxy with every flag that would write
// a machine-wide setting off (conntrack sizes and timeouts: 0 leaves them).
func (l *lab) startProxy(n *node) error {
	var argv []string
	if n.braid() {
		bin := filepath.Join(l.repo, "bin")
		argv = []string{filepath.Join(bin, "braid"), "agent", "--datastore", "kubernetes", "--kubeconfig", l.kubeconfig,
			"--name", n.k8sName(), "--device", device, "--conflist", l.conflist(n), "--cni-path", kit.CNIPath(l.repo),
			"--metrics-address", "127.0.0.1:9962", "--state-dir", n.state(), "--bpf-root", n.bpfRoot()}
	} else {
		bin, err := kubetest.Binary("kube-proxy")
		if err != nil {
			return err
		}
		argv = []string{bin, "--kubeconfig", l.kubeconfig, "--hostname-override", n.k8sName(), "--proxy-mode", n.kind,
			"--cluster-cidr", clusterCIDR, "--nodeport-addresses", n.ip() + "/32",
			"--conntrack-max-per-core=0", "--conntrack-min=0", "--conntrack-tcp-timeout-established=0",
			"--conntrack-tcp-timeout-close-wait=0", "--conntrack-udp-timeout=0", "--conntrack-udp-timeout-stream=0",
			"--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256", "--v=2"}
	}
	log, err := os.OpenFile(filepath.Join(n.dir(), "proxy.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	n.proc = exec.Command("nsenter", append([]string{"--net=" + kit.NSPath(n.netns())}, argv...)...)
	n.proc.Stdout, n.proc.Stderr = log, log
	n.proc.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return n.proc.Start()
}

// stopProxy stops n's proxy (SIGTERM, then SIGKILL after 10 s).
func (n *node) stopProxy() {
	if n.proc == nil {
		return
	}
	done := make(chan struct{})
	go func() { _ = n.proc.Wait(); close(done) }()
	_ = n.proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = n.proc.Process.Kill()
		<-done
	}
	n.proc = nil
}

// logTail is the end of n's proxy log, for an error.
func (n *node) logTail() string {
	b, _ := os.ReadFile(filepath.Join(n.dir(), "proxy.log"))
	return kit.LastLines(string(b), 15)
}

// addPod attaches a pod netns to n with cnitool run in n's netns, retried
// for up to 30 s: a braid node takes pods once its agent has the Node's
// pod CIDR.
func (l *lab) addPod(ctx context.Context, n *node, name string) (*pod, error) {
	p := &pod{node: n, ns: nsPrefix + "p-" + n.name + "-" + name}
	if err := addNetns(ctx, p.ns, podSysctls); err != nil {
		return nil, err
	}
	var out string
	var err error
	for i := 0; i < 60; i++ {
		out, err = kit.NS(n.netns()).Run(ctx, time.Minute, filepath.Join(l.repo, "bin/tools/cnitool"), "add", n.network(), kit.NSPath(p.ns))
		if err == nil {
			break
		}
		_, _ = kit.NS(n.netns()).Run(ctx, time.Minute, filepath.Join(l.repo, "bin/tools/cnitool"), "del", n.network(), kit.NSPath(p.ns))
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, n.logTail())
	}
	var res struct {
		IPs []struct{ Address string } `json:"ips"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) == 0 {
		return nil, fmt.Errorf("cnitool add %s: no address in %q", p.ns, out)
	}
	addr, err := netip.ParsePrefix(res.IPs[0].Address)
	if err != nil {
		return nil, err
	}
	p.ip = addr.Addr().String()
	return p, nil
}

// enforced counts the Service ports n's proxy enforces now: braid's store
// (`braid service list`, what the agent wrote and synced), kube-proxy's
// KUBE-SERVICES cluster-IP rules (iptables-save) or its service-ips map
// elements (nft).
func (l *lab) enforced(ctx context.Context, n *node) (int, error) {
	in := kit.NS(n.netns())
	switch n.kind {
	case "braid":
		out, err := in.Run(ctx, time.Minute, filepath.Join(l.repo, "bin/braid"), "service", "list", "-o", "json",
			"--state-dir", n.state(), "--bpf-root", n.bpfRoot())
		if err != nil {
			return 0, err
		}
		var listed []json.RawMessage
		err = json.Unmarshal([]byte(out), &listed)
		return len(listed), err
	case "iptables":
		out, err := in.Run(ctx, time.Minute, "iptables-save", "-t", "nat")
		n := 0
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "-A KUBE-SERVICES ") && strings.Contains(line, "cluster IP\" -m tcp --dport") {
				n++
			}
		}
		return n, err
	default:
		out, err := in.Run(ctx, time.Minute, "nft", "list", "map", "ip", "kube-proxy", "service-ips")
		return strings.Count(out, "goto service-"), err
	}
}

// waitEnforced polls enforced until it reaches want, for up to limit.
func (l *lab) waitEnforced(ctx context.Context, n *node, want int, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	got, err := 0, error(nil)
	for time.Since(start) < limit && ctx.Err() == nil {
		if got, err = l.enforced(ctx, n); err == nil && got >= want {
			return time.Since(start), nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s enforces %d of %d service ports after %s (last error %v)\n%s", n.title(), got, want, limit, err, n.logTail())
}
