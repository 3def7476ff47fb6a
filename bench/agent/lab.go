package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The topology: an underlay bridge in ba-u with etcd on it, nodes ba-n<i>
// (198.18.0.i, eth0), pods ba-n<i>-<name>. Addresses from 198.18.0.0/15 only.
const (
	work        = "/run/braid-bench-agent"
	nsPrefix    = "ba-"
	underlay    = nsPrefix + "u"
	etcdIP      = "198.18.0.254"
	etcdURL     = "http://" + etcdIP + ":2379"
	clusterCIDR = "198.19.0.0/16"
	cgroupRoot  = "/sys/fs/cgroup/unified"
	metricsAddr = "127.0.0.1:9962"
	leaseTTL    = "5s"
)

type lab struct {
	repo     string
	ctx      context.Context
	procs    []*exec.Cmd // killed at teardown, newest first
	nodes    []*node
	cleanups []func()
}

type node struct {
	i      int
	name   string // ba-n<i>
	ip     string
	dir    string
	agent  *exec.Cmd
	client *pod // a pod probes run from
}

type pod struct {
	ns string
	ip netip.Addr
}

func (l *lab) bin(name string) string { return filepath.Join(l.repo, "bin", name) }

// sh runs a command and returns its stdout; the error carries stderr.
func (l *lab) sh(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(errb.Bytes()))
	}
	return out.Bytes(), nil
}

// in runs a command inside netns ns.
func (l *lab) in(ns string, name string, args ...string) ([]byte, error) {
	return l.sh("nsenter", append([]string{"--net=/run/netns/" + ns, name}, args...)...)
}

// spawn starts a long-running command inside ns, logging to log.
func (l *lab) spawn(ns, log string, name string, args ...string) (*exec.Cmd, error) {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns, name}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	l.procs = append(l.procs, cmd)
	return cmd, nil
}

// setup builds the underlay and starts etcd.
func (l *lab) setup() error {
	l.teardown()
	if err := os.MkdirAll(work, 0o700); err != nil {
		return err
	}
	for _, c := range [][]string{
		{"ip", "netns", "add", underlay},
		{"ip", "-n", underlay, "link", "set", "lo", "up"},
		{"ip", "-n", underlay, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", underlay, "link", "set", "br0", "up"},
		{"ip", "-n", underlay, "addr", "add", etcdIP + "/24", "dev", "br0"},
	} {
		if _, err := l.sh(c[0], c[1:]...); err != nil {
			return err
		}
	}
	_, err := l.spawn(underlay, filepath.Join(work, "etcd.log"), "etcd", "--name", "ba", "--data-dir", filepath.Join(work, "etcd"),
		"--logger", "zap", "--log-level", "warn", "--quota-backend-bytes", "4294967296",
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "ba=http://127.0.0.1:2380")
	if err != nil {
		return err
	}
	return l.wait(10*time.Second, "etcd", func() error {
		_, err := l.in(underlay, l.bin("braid"), "service", "list", "--etcd-endpoints", etcdURL)
		return err
	})
}

// addNode makes node i, its conflist and its cgroup (startAgent starts it).
func (l *lab) addNode(i int) (*node, error) {
	n := &node{i: i, name: fmt.Sprintf("%sn%d", nsPrefix, i), ip: fmt.Sprintf("198.18.0.%d", i), dir: filepath.Join(work, fmt.Sprintf("n%d", i))}
	port := fmt.Sprintf("n%d", i)
	steps := [][]string{
		{"ip", "netns", "add", n.name},
		{"ip", "-n", underlay, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", n.name},
		{"ip", "-n", underlay, "link", "set", port, "master", "br0", "up"},
		{"ip", "-n", n.name, "addr", "add", n.ip + "/24", "dev", "eth0"},
		{"ip", "-n", n.name, "link", "set", "eth0", "up"},
		{"ip", "-n", n.name, "link", "set", "lo", "up"},
	}
	for _, s := range []string{"net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
		"net.ipv4.conf.all.accept_local=1", "net.ipv6.conf.all.disable_ipv6=1"} {
		steps = append(steps, []string{"nsenter", "--net=/run/netns/" + n.name, "sysctl", "-qw", s})
	}
	for _, c := range steps {
		if _, err := l.sh(c[0], c[1:]...); err != nil {
			return nil, err
		}
	}
	bpf := filepath.Join(n.dir, "bpf")
	if err := os.MkdirAll(bpf, 0o700); err != nil {
		return nil, err
	}
	if err := syscall.Mount("bpffs", bpf, "bpf", 0, "mode=0700"); err != nil {
		return nil, fmt.Errorf("bpffs on %s: %w", bpf, err)
	}
	if err := os.MkdirAll(n.cgroup(), 0o755); err != nil {
		return nil, err
	}
	if err := l.conflist(n); err != nil {
		return nil, err
	}
	l.nodes = append(l.nodes, n)
	return n, nil
}

func (n *node) cgroup() string   { return filepath.Join(cgroupRoot, n.name) }
func (n *node) stateDir() string { return filepath.Join(n.dir, "state") }
func (n *node) netd() string     { return filepath.Join(n.dir, "net.d") }

// conflist writes chain-configs/vxlan-lb.conflist with the node's paths
// and sock-lb on the node's cgroup.
func (l *lab) conflist(n *node) error {
	raw, err := os.ReadFile(filepath.Join(l.repo, "chain-configs", "vxlan-lb.conflist"))
	if err != nil {
		return err
	}
	var list map[string]any
	if err := json.Unmarshal(raw, &list); err != nil {
		return err
	}
	plugins, _ := list["plugins"].([]any)
	for _, p := range plugins {
		m := p.(map[string]any)
		m["stateDir"], m["bpfRoot"], m["logFile"] = n.stateDir(), filepath.Join(n.dir, "bpf"), filepath.Join(n.dir, "cni.log")
		if m["type"] == "sock-lb" {
			m["cgroupRoot"] = n.cgroup()
		}
	}
	out, _ := json.MarshalIndent(list, "", "  ")
	if err := os.MkdirAll(n.netd(), 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(n.netd(), "braid.conflist"), out, 0o600)
}

func (l *lab) startAgent(n *node) error {
	var err error
	n.agent, err = l.spawn(n.name, filepath.Join(n.dir, "agent.log"), l.bin("braid"), "agent",
		"--name", n.name, "--node-ip", n.ip, "--device", "eth0",
		"--conflist", filepath.Join(n.netd(), "braid.conflist"),
		"--cni-path", l.bin("")+":"+l.bin("tools/cni"),
		"--datastore", "etcd", "--etcd-endpoints", etcdURL, "--cluster-cidr", clusterCIDR,
		"--lease-ttl", leaseTTL, "--metrics-address", metricsAddr,
		"--state-dir", n.stateDir(), "--bpf-root", filepath.Join(n.dir, "bpf"))
	return err
}

// registered reports whether the agent wrote the node's identity.
func (l *lab) registered(n *node) error {
	// The agent serves HTTP once it has created the node store: two first
	// opens of a store at once are not safe.
	self, _ := os.Executable()
	if _, err := l.in(n.name, self, "get", metricsAddr, "/healthz"); err != nil {
		return err
	}
	out, err := l.in(n.name, l.bin("braid"), "status", "-o", "json", "--state-dir", n.stateDir(), "--bpf-root", filepath.Join(n.dir, "bpf"))
	if err != nil {
		return err
	}
	var s struct {
		Node *struct{ PodCIDR string } `json:"node"`
	}
	if err := json.Unmarshal(out, &s); err != nil || s.Node == nil || s.Node.PodCIDR == "" {
		return fmt.Errorf("not registered yet")
	}
	return nil
}

// addPod attaches pod <node>-<name> through the real chain with cnitool.
func (l *lab) addPod(n *node, name string) (*pod, error) {
	p := &pod{ns: n.name + "-" + name}
	if _, err := l.sh("ip", "netns", "add", p.ns); err != nil {
		return nil, err
	}
	if _, err := l.sh("ip", "-n", p.ns, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(l.ctx, "nsenter", "--net=/run/netns/"+n.name, l.bin("tools/cnitool"), "add", "braid", "/run/netns/"+p.ns)
	cmd.Env = append(os.Environ(), "NETCONFPATH="+n.netd(), "CNI_PATH="+l.bin("")+":"+l.bin("tools/cni"))
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("cnitool add %s: %w", p.ns, err)
	}
	var res struct {
		IPs []struct{ Address string } `json:"ips"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.IPs) == 0 {
		return nil, fmt.Errorf("cnitool add %s: no address in %s", p.ns, out)
	}
	pfx, err := netip.ParsePrefix(res.IPs[0].Address)
	p.ip = pfx.Addr()
	return p, err
}

// serve runs an echo server answering with the pod's name on port.
func (l *lab) serve(p *pod, port int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if _, err := l.spawn(p.ns, filepath.Join(work, p.ns+".log"), self, "serve", fmt.Sprint(port), p.ns); err != nil {
		return err
	}
	return l.wait(5*time.Second, "server in "+p.ns, func() error {
		_, err := l.in(p.ns, self, "probe", fmt.Sprintf("%s:%d", p.ip, port), fmt.Sprint(time.Now().UnixNano()), "1s")
		return err
	})
}

// probe starts a prober in pod p of node n (in the node's cgroup, where
// sock-lb applies) that connects to dst until a server answers and prints
// how long after start that was.
func (l *lab) probe(n *node, dst string, start time.Time, timeout time.Duration) (*exec.Cmd, *bytes.Buffer, error) {
	cg, err := os.Open(n.cgroup())
	if err != nil {
		return nil, nil, err
	}
	defer cg.Close()
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	var out bytes.Buffer
	cmd := exec.Command("nsenter", "--net=/run/netns/"+n.client.ns, self, "probe", dst, fmt.Sprint(start.UnixNano()), timeout.String())
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	return cmd, &out, cmd.Start()
}

// wait retries fn every 20ms until it succeeds or timeout passes.
func (l *lab) wait(timeout time.Duration, what string, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || l.ctx.Err() != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// teardown stops every process, then removes namespaces, mounts, cgroups
// and files. It also clears what a crashed earlier run left.
func (l *lab) teardown() {
	for i := len(l.procs) - 1; i >= 0; i-- {
		p := l.procs[i]
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	l.procs = nil
	for _, c := range l.cleanups {
		c()
	}
	l.cleanups = nil
	_, _ = l.sh("ip", "link", "del", "ba-root") // a crashed run's
	mounts, _ := filepath.Glob(filepath.Join(work, "n*", "bpf"))
	for _, m := range mounts {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	nss, _ := filepath.Glob("/run/netns/" + nsPrefix + "*")
	for _, ns := range nss {
		_, _ = l.sh("ip", "netns", "del", filepath.Base(ns))
	}
	cgs, _ := filepath.Glob(filepath.Join(cgroupRoot, nsPrefix+"n*"))
	for _, cg := range cgs {
		_ = os.Remove(cg)
	}
	_ = os.RemoveAll(work)
}

// logTails prints the end of every agent's log, to say why a run failed.
func (l *lab) logTails() {
	for _, n := range l.nodes {
		b, _ := os.ReadFile(filepath.Join(n.dir, "agent.log"))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		fmt.Fprintf(os.Stderr, "--- %s agent.log:\n%s\n", n.name, strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}
}
