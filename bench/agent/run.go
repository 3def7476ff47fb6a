package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/braid-cni/braid/core/etcdstore"
	"github.com/braid-cni/braid/core/store"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

type results struct {
	serviceAdd []time.Duration // per rep: until the last node's client got an answer
	joins      []join
	scale      scale
}

type join struct{ registered, podAdded, traffic time.Duration }

type scale struct {
	nodes, services     int
	write, applied      time.Duration // writing everything to etcd; until the last one answers on every node
	agentCPU, pluginCPU float64       // % of one core, steady state
	agentRSS, pluginRSS uint64        // bytes, after the window
	agentPeakRSS        uint64
	serviceAdd          []time.Duration          // a service add at that scale
	reconcile           map[string]time.Duration // mean Reconcile by plugin during those
}

func run(l *lab, cfg config) (*results, error) {
	res := &results{}
	fmt.Println("setting up: underlay, etcd, two nodes")
	if err := l.setup(); err != nil {
		return nil, err
	}
	var servers []*pod
	for i := 1; i <= 2; i++ {
		n, err := l.addNode(i)
		if err != nil {
			return nil, err
		}
		if err := l.startAgent(n); err != nil {
			return nil, err
		}
		if err := l.wait(20*time.Second, n.name+" registered", func() error { return l.registered(n) }); err != nil {
			return nil, err
		}
		if n.client, err = l.addPod(n, "c"); err != nil {
			return nil, err
		}
		s, err := l.addPod(n, "s")
		if err != nil {
			return nil, err
		}
		servers = append(servers, s)
	}
	for _, s := range servers {
		if err := l.serve(s, 8080); err != nil {
			return nil, err
		}
	}
	backends := servers[0].ip.String() + ":8080," + servers[1].ip.String() + ":8080"
	real := l.nodes[:2]

	fmt.Println("braid service add -> traffic on every node")
	for rep := range cfg.reps {
		d, err := l.timeServiceAdd(real, fmt.Sprintf("svc%d", rep), fmt.Sprintf("198.18.100.%d", 20+rep), backends)
		if err != nil {
			return nil, err
		}
		res.serviceAdd = append(res.serviceAdd, d)
	}

	fmt.Println("node join -> traffic from every node")
	for j := range min(cfg.reps, 3) {
		n, err := l.addNode(3 + j)
		if err != nil {
			return nil, err
		}
		jr, err := l.timeJoin(n, real)
		if err != nil {
			return nil, err
		}
		res.joins = append(res.joins, jr)
		_ = n.agent.Process.Signal(os.Interrupt) // leave before the scale run
	}

	fmt.Printf("scale: %d simulated nodes, %d services in etcd\n", cfg.nodes, cfg.services)
	sc, err := l.scaleRun(cfg, real, servers)
	if err != nil {
		return nil, err
	}
	res.scale = *sc
	return res, nil
}

// timeServiceAdd starts probers of vip:80 on every node, runs `braid
// service add`, and returns when the last prober got an answer, measured
// from the start of the command.
func (l *lab) timeServiceAdd(nodes []*node, name, vip, backends string) (time.Duration, error) {
	start := time.Now().Add(300 * time.Millisecond)
	var probes []*exec.Cmd
	var outs []*bytes.Buffer
	for _, n := range nodes {
		p, out, err := l.probe(n, vip+":80", start, 20*time.Second)
		if err != nil {
			return 0, err
		}
		probes, outs = append(probes, p), append(outs, out)
	}
	time.Sleep(time.Until(start))
	if _, err := l.in(underlay, l.bin("braid"), "service", "add", name, "--vip", vip, "--port", "80",
		"--backend", backends, "--etcd-endpoints", etcdURL); err != nil {
		return 0, err
	}
	return waitProbes(probes, outs)
}

// waitProbes returns the longest of the probers' times.
func waitProbes(probes []*exec.Cmd, outs []*bytes.Buffer) (time.Duration, error) {
	var worst time.Duration
	for i, p := range probes {
		if err := p.Wait(); err != nil {
			return 0, fmt.Errorf("prober: %v: %s", err, outs[i])
		}
		ns, err := strconv.ParseInt(strings.Fields(outs[i].String())[0], 10, 64)
		if err != nil {
			return 0, err
		}
		worst = max(worst, time.Duration(ns))
	}
	return worst, nil
}

// timeJoin starts the agent of a new node and times its registration, a
// pod on it, and that pod answering every other node.
func (l *lab) timeJoin(n *node, others []*node) (join, error) {
	var j join
	start := time.Now()
	if err := l.startAgent(n); err != nil {
		return j, err
	}
	if err := l.wait(20*time.Second, n.name+" registered", func() error { return l.registered(n) }); err != nil {
		return j, err
	}
	j.registered = time.Since(start)
	s, err := l.addPod(n, "s")
	if err != nil {
		return j, err
	}
	self, _ := os.Executable()
	if _, err := l.spawn(s.ns, filepath.Join(work, s.ns+".log"), self, "serve", "8080", s.ns); err != nil {
		return j, err
	}
	j.podAdded = time.Since(start)
	var probes []*exec.Cmd
	var outs []*bytes.Buffer
	for _, o := range others {
		p, out, err := l.probe(o, s.ip.String()+":8080", start, 20*time.Second)
		if err != nil {
			return j, err
		}
		probes, outs = append(probes, p), append(outs, out)
	}
	j.traffic, err = waitProbes(probes, outs)
	return j, err
}

// scaleRun registers simulated nodes and writes services into etcd, waits
// for the first real node to have them all in its datapath, then samples
// what its agent and plugin servers use.
func (l *lab) scaleRun(cfg config, real []*node, servers []*pod) (*scale, error) {
	sc := &scale{nodes: cfg.nodes, services: cfg.services}
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	// The bench's own client reaches etcd from the root netns through a
	// veth into the underlay.
	c, err := l.etcdClient()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	lease, err := c.Grant(ctx, 30)
	if err != nil {
		return nil, err
	}
	ka, err := c.KeepAlive(ctx, lease.ID)
	if err != nil {
		return nil, err
	}
	go func() {
		for range ka {
		}
	}()
	start := time.Now()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := range cfg.nodes {
		m := &etcdstore.Member{Client: c, ClusterCIDR: netip.MustParsePrefix(clusterCIDR), NodeBits: 24, LeaseTTL: 30 * time.Second, Log: quiet,
			Node: store.Node{Name: fmt.Sprintf("sim%03d", i), NodeIP: netip.AddrFrom4([4]byte{198, 18, byte(3 + i/250), byte(1 + i%250)}), Device: "eth0"}}
		if _, err := m.Register(ctx, lease.ID); err != nil {
			return nil, fmt.Errorf("simulated node %d: %w", i, err)
		}
	}
	be := []store.Backend{
		{IP: servers[0].ip, Port: 8080},
		{IP: servers[1].ip, Port: 8080},
	}
	for i := 0; i < cfg.services; i += 100 {
		var batch []store.Service
		for k := i; k < min(i+100, cfg.services); k++ {
			batch = append(batch, store.Service{Name: fmt.Sprintf("sim%05d", k), Protocol: store.TCP,
				VIP: serviceVIP(k), Port: servicePort(k),
				Backends: be})
		}
		if err := c.PutServices(ctx, batch...); err != nil {
			return nil, fmt.Errorf("services %d…: %w", i, err)
		}
	}
	sc.write = time.Since(start)
	// Done when the last service written answers on every real node.
	last := cfg.services - 1
	var probes []*exec.Cmd
	var outs []*bytes.Buffer
	for _, n := range real {
		p, out, err := l.probe(n, netip.AddrPortFrom(serviceVIP(last), servicePort(last)).String(), start, 10*time.Minute)
		if err != nil {
			return nil, err
		}
		probes, outs = append(probes, p), append(outs, out)
	}
	if _, err := waitProbes(probes, outs); err != nil {
		return nil, err
	}
	sc.applied = time.Since(start)
	fmt.Printf("  written in %v, the last answers everywhere after %v; sampling %v\n", sc.write.Round(time.Millisecond), sc.applied.Round(time.Millisecond), cfg.window)
	time.Sleep(5 * time.Second) // let every node settle
	pid := real[0].agent.Process.Pid
	a0, p0 := cpuTicks(pid)
	t0 := time.Now()
	time.Sleep(cfg.window)
	a1, p1 := cpuTicks(pid)
	secs := time.Since(t0).Seconds()
	sc.agentCPU = 100 * float64(a1-a0) / clkTck / secs
	sc.pluginCPU = 100 * float64(p1-p0) / clkTck / secs
	sc.agentRSS, sc.agentPeakRSS = memory(pid)
	for _, child := range children(pid) {
		rss, _ := memory(child)
		sc.pluginRSS += rss
	}
	before, err := l.reconcileTimes(real[0])
	if err != nil {
		return nil, err
	}
	for rep := range 3 {
		d, err := l.timeServiceAdd(real, fmt.Sprintf("scale%d", rep), fmt.Sprintf("198.18.100.%d", 40+rep),
			servers[0].ip.String()+":8080,"+servers[1].ip.String()+":8080")
		if err != nil {
			return nil, err
		}
		sc.serviceAdd = append(sc.serviceAdd, d)
	}
	after, err := l.reconcileTimes(real[0])
	if err != nil {
		return nil, err
	}
	sc.reconcile = map[string]time.Duration{}
	for plugin, a := range after {
		b := before[plugin]
		if n := a.count - b.count; n > 0 {
			sc.reconcile[plugin] = time.Duration((a.sum - b.sum) / float64(n) * float64(time.Second))
		}
	}
	return sc, nil
}

type histogram struct {
	sum   float64
	count uint64
}

// reconcileTimes reads n's braid_reconcile_duration_seconds by plugin.
func (l *lab) reconcileTimes(n *node) (map[string]histogram, error) {
	fams, err := l.metrics(n)
	if err != nil {
		return nil, err
	}
	out := map[string]histogram{}
	for _, m := range fams["braid_reconcile_duration_seconds"].GetMetric() {
		for _, lb := range m.GetLabel() {
			if lb.GetName() == "plugin" {
				out[lb.GetValue()] = histogram{m.GetHistogram().GetSampleSum(), m.GetHistogram().GetSampleCount()}
			}
		}
	}
	return out, nil
}

// Simulated service k: 200 VIPs in 198.18.101.0/24, 1000+ ports each.
func serviceVIP(k int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 101, byte(1 + k%200)}) }
func servicePort(k int) uint16    { return uint16(1000 + k/200) }

// etcdClient connects from the root netns: a veth pair into the underlay.
func (l *lab) etcdClient() (*etcdstore.Client, error) {
	for _, c := range [][]string{
		{"ip", "link", "add", "ba-root", "type", "veth", "peer", "name", "root", "netns", underlay},
		{"ip", "-n", underlay, "link", "set", "root", "master", "br0", "up"},
		{"ip", "addr", "add", "198.18.0.253/32", "dev", "ba-root"},
		{"ip", "link", "set", "ba-root", "up"},
		{"ip", "route", "add", etcdIP + "/32", "dev", "ba-root"},
	} {
		if _, err := l.sh(c[0], c[1:]...); err != nil {
			return nil, err
		}
	}
	l.cleanups = append(l.cleanups, func() { _, _ = l.sh("ip", "link", "del", "ba-root") })
	return etcdstore.Connect(etcdstore.Config{Endpoints: []string{etcdURL}})
}

// metrics reads n's agent's /metrics.
func (l *lab) metrics(n *node) (map[string]*dto.MetricFamily, error) {
	self, _ := os.Executable()
	out, err := l.in(n.name, self, "get", metricsAddr, "/metrics")
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(bytes.NewReader(out))
}

// clkTck is USER_HZ, the unit of /proc/<pid>/stat times.
const clkTck = 100

// cpuTicks is the user+system time of pid and of its children (the
// plugin servers), in clock ticks.
func cpuTicks(pid int) (self, kids uint64) {
	self = ticks(pid)
	for _, c := range children(pid) {
		kids += ticks(c)
	}
	return self, kids
}

func ticks(pid int) uint64 {
	f := statFields(pid)
	if len(f) < 13 {
		return 0
	}
	// After the command: state(0) ppid(1) … utime(11) stime(12).
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	return u + s
}

func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
}

func children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(c); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

// memory is pid's resident set and its peak, in bytes.
func memory(pid int) (rss, peak uint64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			peak = v << 10
		}
	}
	return rss, peak
}
