package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
	"github.com/braid-cni/braid/internal/kubetest"
	"golang.org/x/sys/unix"
)

// datapath is one way from a client pod to the measured Service's backend.
type datapath struct {
	key, title     string
	node           *node
	client, server kit.In
	serverIP       string
	target         string
}

func (d *datapath) pair(cpu string) kit.Pair {
	c, s := d.client, d.server
	c.CPUs, s.CPUs = cpu, cpu
	return kit.Pair{Client: c, Server: s, ServerIP: d.serverIP, Target: d.target}
}

// phase is one number of Services defined, measured over every datapath.
type phase struct {
	count    int
	create   time.Duration            // creating the Services and slices added in this phase
	converge map[string]time.Duration // from the last create to the node enforcing all
	position int                      // the measured Service's rule among KUBE-SERVICES' rules (iptables)
	rules    int                      // rules in KUBE-SERVICES
	usage    map[string]usage         // the proxies' CPU so far and memory
	conns    map[string][]kit.ConnResult
	rtts     map[string][]kit.RTT
}

type usage struct {
	cpu      time.Duration // user+system since the proxy started
	rss, hwm int64         // kB
}

type results struct {
	cfg               config
	started, finished time.Time
	endLoad           string
	nodes             []*node
	dps               []*datapath
	phases            []*phase
	changes           map[string][]time.Duration
	sysctls           []string // what kube-proxy's logs say it did with sysctls
}

// measured is node n's measured Service: its backend pod on two ports (the
// connect loop's and sockperf's); change is the Service whose slice the
// change test flips.
func measured(n *node) svc {
	return svc{name: "measured-" + n.name, clusterIP: netip.AddrFrom4([4]byte{198, 18, 255, byte(n.index)}),
		ports: []int32{kit.ConnPort, kit.SockperfPort}, endpoints: []string{n.backend.ip}, ready: true}
}

func change(n *node) svc {
	return svc{name: "change-" + n.name, clusterIP: netip.AddrFrom4([4]byte{198, 18, 255, byte(100 + n.index)}),
		ports: []int32{kit.ConnPort}, endpoints: []string{n.backend.ip}}
}

func run(ctx context.Context, cfg config) (*results, error) {
	cfg.startLoad = kit.LoadAvg()
	res := &results{cfg: cfg, started: time.Now(), changes: map[string][]time.Duration{}}
	if err := kubetest.BinaryError("kube-apiserver", "kube-proxy"); err != nil {
		return nil, err
	}
	l, err := newLab(cfg.repo)
	if err != nil {
		return nil, err
	}
	defer footprint.Sweep()
	if err := os.MkdirAll(filepath.Join(labRoot, "cp"), 0o700); err != nil {
		return nil, err
	}
	kit.Progress("starting etcd and kube-apiserver")
	cp, err := kubetest.Start(filepath.Join(labRoot, "cp"), kubetest.Options{ServiceCIDR: serviceCIDR})
	if err != nil {
		return nil, err
	}
	defer cp.Close()
	a, err := newAPI(cp.Config)
	if err != nil {
		return nil, err
	}
	listener, err := makeUnderlay(ctx)
	if err != nil {
		return nil, fmt.Errorf("underlay: %w", err)
	}
	defer cp.Proxy(listener)()
	if err := cp.AdminKubeconfig(l.kubeconfig, fmt.Sprintf("https://%s:%d", apiIP, apiPort)); err != nil {
		return nil, err
	}

	res.nodes = []*node{{name: "lb", index: 1, kind: "braid"}, {name: "ipt", index: 2, kind: "iptables"}, {name: "nft", index: 3, kind: "nftables"}}
	for _, n := range res.nodes {
		defer n.stopProxy()
		if err := l.addNode(ctx, n); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.name, err)
		}
		if err := a.createNode(ctx, n); err != nil {
			return nil, err
		}
		if err := l.startProxy(n); err != nil {
			return nil, err
		}
	}
	for _, n := range res.nodes {
		if n.client, err = l.addPod(ctx, n, "client"); err == nil {
			n.backend, err = l.addPod(ctx, n, "backend")
		}
		if err != nil {
			return nil, fmt.Errorf("pods on %s: %w", n.name, err)
		}
		for _, s := range []svc{measured(n), change(n)} {
			if err := a.create(ctx, s); err != nil {
				return nil, err
			}
		}
		res.dps = append(res.dps, &datapath{key: n.name, title: n.title(), node: n, client: n.client.in(""), server: n.backend.in(""),
			serverIP: n.backend.ip, target: measured(n).clusterIP.String()})
	}
	ipt := res.nodes[1]
	res.dps = append(res.dps, &datapath{key: "direct", title: "direct (pod IP), iptables node", node: ipt,
		client: ipt.client.in(""), server: ipt.backend.in(""), serverIP: ipt.backend.ip, target: ipt.backend.ip})

	defined := 0
	for _, count := range cfg.counts {
		ph := &phase{count: count, converge: map[string]time.Duration{}, usage: map[string]usage{},
			conns: map[string][]kit.ConnResult{}, rtts: map[string][]kit.RTT{}}
		if ph.create, err = a.createFillers(ctx, defined, count); err != nil {
			return nil, err
		}
		defined = count
		// Every node enforces the fillers and the measured Services' ports
		// (2 for each of 3 nodes); change-* has no ready endpoint yet.
		for _, n := range res.nodes {
			if ph.converge[n.name], err = l.waitEnforced(ctx, n, count+6, 5*time.Minute); err != nil {
				return nil, err
			}
			ph.usage[n.name] = procUsage(n)
			kit.Progress("%s: %s enforces every Service %s after the last create", services(count), n.title(), ph.converge[n.name].Round(time.Millisecond))
		}
		if ph.position, ph.rules, err = position(ctx, ipt); err != nil {
			return nil, err
		}
		kit.Progress("%s: measured-ipt is rule %d of %d in KUBE-SERVICES", services(count), ph.position, ph.rules)
		if err := measureAll(ctx, cfg, ph, res.dps); err != nil {
			return nil, err
		}
		res.phases = append(res.phases, ph)
	}
	if err := res.timeChanges(ctx, a); err != nil {
		return nil, err
	}
	for _, n := range res.nodes[1:] {
		b, _ := os.ReadFile(filepath.Join(n.dir(), "proxy.log"))
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(strings.ToLower(line), "sysctl") {
				res.sysctls = append(res.sysctls, n.kind+": "+line)
			}
		}
	}
	res.finished, res.endLoad = time.Now(), kit.LoadAvg()
	return res, nil
}

func services(n int) string { return fmt.Sprintf("%d Services", n) }

// position finds measured-ipt's jump among KUBE-SERVICES' rules in the
// node's nat table (kube-proxy writes them in the order of a Go map's
// iteration: a random place, rewritten on every full sync).
func position(ctx context.Context, n *node) (at, of int, err error) {
	out, err := kit.NS(n.netns()).Run(ctx, time.Minute, "iptables-save", "-t", "nat")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "-A KUBE-SERVICES ") {
			continue
		}
		of++
		if at == 0 && strings.Contains(line, namespace+"/measured-"+n.name+":") {
			at = of
		}
	}
	return at, of, nil
}

// procUsage reads the CPU time and memory of n's proxy (nsenter execs it:
// same pid).
func procUsage(n *node) usage {
	var u usage
	pid := n.proc.Process.Pid
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(b)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]); len(f) > 12 {
			ut, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			u.cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "VmRSS:" {
				u.rss, _ = strconv.ParseInt(f[1], 10, 64)
			} else if len(f) >= 2 && f[0] == "VmHWM:" {
				u.hwm, _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	return u
}

// measureAll runs connects/s and RTT reps times over dps, the order
// rotating between repetitions.
func measureAll(ctx context.Context, cfg config, ph *phase, dps []*datapath) error {
	for rep := 0; rep < cfg.reps; rep++ {
		for i := range dps {
			d := dps[(i+rep)%len(dps)]
			r, err := kit.MeasureConnects(ctx, d.pair(cfg.cpu), kit.ConnPort, true, cfg.duration)
			if err != nil {
				return fmt.Errorf("%s, %s connects/s: %w", services(ph.count), d.title, err)
			}
			ph.conns[d.key] = append(ph.conns[d.key], r)
			kit.Progress("%6d svc rep %d/%d  %-30s %8.0f connects/s (errors %d)", ph.count, rep+1, cfg.reps, d.title, r.Rate(), r.Errors)
		}
		for i := range dps {
			d := dps[(i+rep)%len(dps)]
			r, err := kit.MeasureRTT(ctx, d.pair(cfg.cpu), false, kit.SockperfPort, cfg.duration)
			if err != nil {
				return fmt.Errorf("%s, %s RTT: %w", services(ph.count), d.title, err)
			}
			ph.rtts[d.key] = append(ph.rtts[d.key], r)
			kit.Progress("%6d svc rep %d/%d  %-30s RTT p50 %6.2f µs  p99 %6.2f µs", ph.count, rep+1, cfg.reps, d.title, r.P50, r.P99)
		}
	}
	return nil
}

// timeChanges times, cfg.changes times per node (nodes alternating), an
// EndpointSlice change: change-<node>'s one endpoint goes from not ready
// (the Service refuses connections) to ready. A probe in the node's client
// pod connects to the ClusterIP every millisecond and prints when the
// first connection succeeds; the figure runs from just before the API
// write to then. Between changes the endpoint goes back to not ready and
// the probe waits for the refusal again.
func (r *results) timeChanges(ctx context.Context, a *api) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for _, n := range r.nodes {
		srv, err := n.backend.in("").StartServer(ctx, kit.ConnPort, self, "connrate-server",
			"-addr", fmt.Sprintf("%s:%d", n.backend.ip, kit.ConnPort), "-max", "30m")
		if err != nil {
			return err
		}
		defer srv.Stop()
	}
	for i := 0; i < r.cfg.changes; i++ {
		for _, n := range r.nodes {
			s := change(n)
			target := fmt.Sprintf("%s:%d", s.clusterIP, kit.ConnPort)
			if i > 0 { // back to not ready, and wait for the node to refuse again
				if err := a.setReady(ctx, s, false); err != nil {
					return err
				}
				if _, err := n.client.in("").Run(ctx, 30*time.Second, self, "probe", "-addr", target, "-want", "refused", "-max", "20s"); err != nil {
					dump, _ := kit.NS(n.netns()).Run(ctx, time.Minute, "iptables-save")
					return fmt.Errorf("%s: change-%s not refused after not ready: %w\n%s\n%s", n.title(), n.name, err, grep(dump, "change-"), n.logTail())
				}
			}
			d, err := r.timeOne(ctx, a, n, s, self, target)
			if err != nil {
				return err
			}
			r.changes[n.name] = append(r.changes[n.name], d)
			kit.Progress("EndpointSlice change %d/%d: %-22s enforced after %s", i+1, r.cfg.changes, n.title(), d.Round(100*time.Microsecond))
		}
	}
	return nil
}

// timeOne starts the probe, makes the endpoint ready and returns the time
// from the write to the first connection through.
func (r *results) timeOne(ctx context.Context, a *api, n *node, s svc, self, target string) (time.Duration, error) {
	type outcome struct {
		out string
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		out, err := n.client.in("").Run(ctx, 30*time.Second, self, "probe", "-addr", target, "-want", "ok", "-max", "20s")
		done <- outcome{out, err}
	}()
	time.Sleep(300 * time.Millisecond) // the probe runs and is refused
	start := time.Now()
	if err := a.setReady(ctx, s, true); err != nil {
		return 0, err
	}
	o := <-done
	if o.err != nil {
		return 0, fmt.Errorf("%s: change-%s never answered: %w", n.title(), n.name, o.err)
	}
	fs := strings.Fields(o.out)
	if len(fs) != 2 || fs[1] == "0" {
		return 0, fmt.Errorf("%s: probe said %q (it must be refused before the change)", n.title(), o.out)
	}
	at, err := strconv.ParseInt(fs[0], 10, 64)
	if err != nil {
		return 0, err
	}
	return time.Unix(0, at).Sub(start), nil
}

// probe is `probe -addr ip:port -want ok|refused -max d`: connect every
// millisecond until the outcome is the wanted one, then print its time
// (Unix ns) and how many attempts had the other outcome first. "refused"
// is ECONNREFUSED 3 times in a row (what a Service without a ready
// endpoint answers), not a timeout of a busy server. This kernel takes an
// ICMP port unreachable (kube-proxy iptables' REJECT) to a SYN as a soft
// error: connect fails with ECONNREFUSED only after the retransmitted SYN
// meets it again, a second later. So refused attempts wait up to 3 s, and
// ok attempts give up after 20 ms (a SYN-ACK from a backend comes sooner):
// the ok probe's resolution is about 20 ms when refusals are slow.
func probe(args []string) int {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	addr := fs.String("addr", "", "IPv4 ip:port")
	want := fs.String("want", "ok", "ok or refused")
	maxRun := fs.Duration("max", 20*time.Second, "give up after this long")
	_ = fs.Parse(args)
	ap, err := netip.ParseAddrPort(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sa := &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	other, inRow, last := 0, 0, error(nil)
	for deadline := time.Now().Add(*maxRun); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		timeout := 20 * time.Millisecond
		if *want == "refused" {
			timeout = 3 * time.Second
		}
		err := dial(sa, timeout)
		switch {
		case *want == "ok" && err == nil:
			fmt.Println(time.Now().UnixNano(), other)
			return 0
		case *want == "refused" && errors.Is(err, unix.ECONNREFUSED):
			if inRow++; inRow == 3 {
				fmt.Println(time.Now().UnixNano(), other)
				return 0
			}
		default:
			other, inRow, last = other+1, 0, err
		}
	}
	fmt.Fprintf(os.Stderr, "no %s from %s within %s (%d attempts, the last: %v)\n", *want, *addr, *maxRun, other, last)
	return 1
}

// dial connects once (bounded by SO_SNDTIMEO: timeout) and resets.
func dial(sa *unix.SockaddrInet4, timeout time.Duration) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	tv := unix.NsecToTimeval(int64(timeout))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	return unix.Connect(fd, sa)
}

func grep(s, what string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, what) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
