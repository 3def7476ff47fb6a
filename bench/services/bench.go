package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
)

// topology is what build makes: the nodes, and the pods measured.
type topology struct {
	lb, kp                   *node // ClusterIP: braid sock-lb; kernel path with kube-proxy's rules
	dsr1, dsr2, snat1, snat2 *node // NodePort pairs: entry node, backend's node
	ipt1, ipt2               *node
	lbClient, lbBackend      *pod
	kpClient, kpBackend      *pod
	dsrBackend, snatBackend  *pod
	iptBackend               *pod
}

// runs is every run of one datapath in one phase.
type runs struct {
	conns []kit.ConnResult
	rtts  []kit.RTT
}

// phase is one set of services defined, measured over its datapaths.
type phase struct {
	count        int           // ClusterIP services defined (0: the NodePort phase)
	braidSvcs    int           // services in braid's store (the measured one counts twice: a service per port)
	natRules     int           // rules in the kube-proxy node's KUBE-SERVICES
	braidApply   time.Duration // braid service apply + braid sync
	iptablesLoad time.Duration // iptables-restore of the nat table
	runs         map[string]*runs
}

// replies is what the captures saw during one NodePort connect run.
type replies struct {
	fromClient int // packets from the client delivered to the entry node
	viaEntry   int // packets to the client sent by the entry node
	direct     int // packets to the client sent by the backend's node
	dropped    int // packets the captures' kernel buffers dropped
	conns      int // connections counted (after the 0.5 s warm-up)
}

type results struct {
	cfg               config
	started, finished time.Time
	endLoad           string
	clusterDPs        []*datapath
	nodePortDPs       []*datapath
	clusterIP         []*phase
	nodePort          *phase
	replies           map[string]replies
}

// run builds the topology, measures, and leaves the teardown to sweep.
func run(ctx context.Context, cfg config) (*results, error) {
	cfg.startLoad = kit.LoadAvg()
	res := &results{cfg: cfg, started: time.Now(), replies: map[string]replies{}}
	l, err := newLab(cfg.repo)
	if err != nil {
		return nil, err
	}
	defer footprint.Sweep()

	kit.Progress("building the topology: 8 nodes, 7 pods, the external client")
	t, err := l.build(ctx)
	if err != nil {
		return nil, err
	}
	res.clusterDPs, res.nodePortDPs = t.clusterDatapaths(), t.nodePortDatapaths()

	for _, count := range cfg.counts {
		ph, err := l.defineClusterIP(ctx, t, count)
		if err != nil {
			return nil, fmt.Errorf("%d services: %w", count, err)
		}
		kit.Progress("ClusterIP, %s: braid apply+sync %s (%d in the store), iptables-restore %s (%d rules in KUBE-SERVICES)",
			services(count), ph.braidApply.Round(time.Millisecond), ph.braidSvcs, ph.iptablesLoad.Round(time.Millisecond), ph.natRules)
		if err := measureAll(ctx, cfg, fmt.Sprintf("%d svc", count), ph, res.clusterDPs); err != nil {
			return nil, err
		}
		res.clusterIP = append(res.clusterIP, ph)
	}

	res.nodePort = &phase{runs: map[string]*runs{}}
	if err := measureAll(ctx, cfg, "NodePort", res.nodePort, res.nodePortDPs); err != nil {
		return nil, err
	}
	for _, d := range res.nodePortDPs {
		r, err := replyPath(ctx, cfg, d)
		if err != nil {
			return nil, fmt.Errorf("%s reply path: %w", d.title, err)
		}
		kit.Progress("reply path %-22s client→entry %d, entry→client %d, backend's node→client %d (dropped %d)",
			d.title, r.fromClient, r.viaEntry, r.direct, r.dropped)
		res.replies[d.key] = r
	}
	res.finished, res.endLoad = time.Now(), kit.LoadAvg()
	return res, nil
}

// build makes the underlay with the client, the nodes, their pods, and the
// NodePort service on every NodePort node.
func (l *lab) build(ctx context.Context) (*topology, error) {
	if err := makeUnderlay(ctx); err != nil {
		return nil, fmt.Errorf("underlay: %w", err)
	}
	t := &topology{
		lb: &node{name: "lb", index: 1, braid: true}, kp: &node{name: "kp", index: 2},
		dsr1: &node{name: "dsr1", index: 3, braid: true}, dsr2: &node{name: "dsr2", index: 4, braid: true},
		snat1: &node{name: "snat1", index: 5, braid: true, mode: "snat"}, snat2: &node{name: "snat2", index: 6, braid: true, mode: "snat"},
		ipt1: &node{name: "ipt1", index: 7}, ipt2: &node{name: "ipt2", index: 8},
	}
	for _, n := range t.nodes() {
		if err := l.addNode(ctx, n); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.name, err)
		}
	}
	for _, p := range [][2]*node{{t.dsr1, t.dsr2}, {t.snat1, t.snat2}} {
		if err := l.meet(ctx, p[0], p[1]); err != nil {
			return nil, err
		}
	}
	// The kernel pair routes like braid's native-route: the entry node
	// reaches the backend's node's pods through it.
	if err := inNS(ctx, t.ipt1.netns(), "ip", "route", "add", t.ipt2.podCIDR(), "via", t.ipt2.ip()); err != nil {
		return nil, err
	}
	pods := []struct {
		p    **pod
		n    *node
		name string
	}{
		{&t.lbClient, t.lb, "client"}, {&t.lbBackend, t.lb, "backend"},
		{&t.kpClient, t.kp, "client"}, {&t.kpBackend, t.kp, "backend"},
		{&t.dsrBackend, t.dsr2, "backend"}, {&t.snatBackend, t.snat2, "backend"}, {&t.iptBackend, t.ipt2, "backend"},
	}
	for _, p := range pods {
		var err error
		if *p.p, err = l.addPod(ctx, p.n, p.name); err != nil {
			return nil, fmt.Errorf("pod %s on %s: %w", p.name, p.n.name, err)
		}
	}
	if err := l.defineNodePort(ctx, t); err != nil {
		return nil, err
	}
	return t, t.checkReachable(ctx)
}

func (t *topology) nodes() []*node {
	return []*node{t.lb, t.kp, t.dsr1, t.dsr2, t.snat1, t.snat2, t.ipt1, t.ipt2}
}

// defineNodePort adds the NodePort service to both nodes of each braid
// pair (every node needs the same services) and syncs them, and loads
// kube-proxy's rules for it on the kernel pair's entry node.
func (l *lab) defineNodePort(ctx context.Context, t *topology) error {
	for _, pair := range []struct {
		nodes   []*node
		backend *pod
	}{{[]*node{t.dsr1, t.dsr2}, t.dsrBackend}, {[]*node{t.snat1, t.snat2}, t.snatBackend}} {
		file := filepath.Join(labRoot, "nodeport-"+pair.nodes[0].name+".json")
		if err := writeBraidServices(file, nodePortSet(netip.MustParseAddr(pair.backend.ip))); err != nil {
			return err
		}
		for _, n := range pair.nodes {
			if _, err := l.braid(ctx, n, "service", "apply", "-f", file); err != nil {
				return err
			}
		}
	}
	for _, n := range []*node{t.lb, t.dsr1, t.dsr2, t.snat1, t.snat2} {
		if err := l.sync(ctx, n); err != nil {
			return fmt.Errorf("braid sync on %s: %w", n.name, err)
		}
	}
	_, err := loadNAT(ctx, t.ipt1.netns(), kubeProxyNAT(nodePortSet(netip.MustParseAddr(t.iptBackend.ip))))
	return err
}

// checkReachable pings what the measurements need, so that a broken
// topology fails here with a clear reason.
func (t *topology) checkReachable(ctx context.Context) error {
	checks := [][2]string{
		{t.lbClient.ns, t.lbBackend.ip}, {t.kpClient.ns, t.kpBackend.ip},
		{clientNS, t.dsr1.ip()}, {clientNS, t.snat1.ip()}, {clientNS, t.ipt1.ip()},
		{t.ipt1.netns(), t.iptBackend.ip},
	}
	for _, c := range checks {
		if _, err := kit.NS(c[0]).Run(ctx, 10*time.Second, "ping", "-c", "2", "-i", "0.2", "-W", "2", c[1]); err != nil {
			return fmt.Errorf("%s cannot reach %s: %w", c[0], c[1], err)
		}
	}
	return nil
}

// defineClusterIP defines count ClusterIP services (the measured one last)
// on the braid node (apply + sync) and as kube-proxy's nat table on the
// kernel node, and times both.
func (l *lab) defineClusterIP(ctx context.Context, t *topology, count int) (*phase, error) {
	ph := &phase{count: count, runs: map[string]*runs{}}
	file := filepath.Join(labRoot, fmt.Sprintf("clusterip-%d.json", count))
	if err := writeBraidServices(file, clusterIPSet(count, netip.MustParseAddr(t.lbBackend.ip))); err != nil {
		return nil, err
	}
	start := time.Now()
	if _, err := l.braid(ctx, t.lb, "service", "apply", "-f", file); err != nil {
		return nil, err
	}
	if err := l.sync(ctx, t.lb); err != nil {
		return nil, err
	}
	ph.braidApply = time.Since(start)
	out, err := l.braid(ctx, t.lb, "service", "list", "-o", "json")
	if err != nil {
		return nil, err
	}
	var listed []json.RawMessage
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		return nil, fmt.Errorf("braid service list: %w", err)
	}
	ph.braidSvcs = len(listed)

	start = time.Now()
	ph.natRules, err = loadNAT(ctx, t.kp.netns(), kubeProxyNAT(clusterIPSet(count, netip.MustParseAddr(t.kpBackend.ip))))
	ph.iptablesLoad = time.Since(start)
	return ph, err
}

// clusterDatapaths are the ClusterIP ways from a client pod to the
// backend pod on the same node.
func (t *topology) clusterDatapaths() []*datapath {
	vip := func(key, title string, client, backend *pod, cs ...*counterSet) *datapath {
		return &datapath{key: key, title: title, client: client.in(""), server: backend.in(""), serverIP: backend.ip,
			target: clusterVIP.String(), connPort: kit.ConnPort, rttPort: kit.SockperfPort, counters: cs}
	}
	direct := func(key, title string, client, backend *pod, cs ...*counterSet) *datapath {
		d := vip(key, title, client, backend, cs...)
		d.client.Cgroup = "" // no sock-lb program runs for its connects: the pure kernel path
		d.target = backend.ip
		return d
	}
	return []*datapath{
		vip("braid", "braid sock-lb", t.lbClient, t.lbBackend, countersOf(t.lb, "sock-lb")),
		direct("braid-direct", "direct, braid node", t.lbClient, t.lbBackend, countersOf(t.lb, "sock-lb")),
		vip("iptables", "kube-proxy iptables", t.kpClient, t.kpBackend),
		direct("iptables-direct", "direct, kube-proxy node", t.kpClient, t.kpBackend),
	}
}

// nodePortDatapaths are the NodePort ways from the external client to
// entry node:nodePort, backend on the other node of the pair.
func (t *topology) nodePortDatapaths() []*datapath {
	np := func(key, title string, entry, remote *node, backend *pod, cs ...*counterSet) *datapath {
		return &datapath{key: key, title: title, client: kit.In{NS: clientNS}, server: backend.in(""), serverIP: backend.ip,
			target: entry.ip(), connPort: int(nodePortConn), rttPort: int(nodePortRTT), counters: cs, entry: entry, remote: remote}
	}
	return []*datapath{
		np("dsr", "braid dsr", t.dsr1, t.dsr2, t.dsrBackend, countersOf(t.dsr1, "dsr"), countersOf(t.dsr2, "dsr")),
		np("snat", "braid dsr, mode snat", t.snat1, t.snat2, t.snatBackend, countersOf(t.snat1, "dsr"), countersOf(t.snat2, "dsr")),
		np("iptables", "kube-proxy iptables", t.ipt1, t.ipt2, t.iptBackend),
	}
}

// measureAll runs both measurements cfg.reps times over dps. Within a
// repetition the datapaths take turns, and the order rotates from one
// repetition to the next, so a drift in machine load spreads over all.
func measureAll(ctx context.Context, cfg config, label string, ph *phase, dps []*datapath) error {
	for _, d := range dps {
		ph.runs[d.key] = &runs{}
	}
	for rep := 0; rep < cfg.reps; rep++ {
		order := make([]*datapath, len(dps))
		for i := range dps {
			order[i] = dps[(i+rep)%len(dps)]
		}
		for _, d := range order {
			err := d.counted(func() error {
				r, err := kit.MeasureConnects(ctx, d.pair(cfg.cpu), d.connPort, true, cfg.duration)
				if err == nil {
					ph.runs[d.key].conns = append(ph.runs[d.key].conns, r)
					kit.Progress("%-8s rep %d/%d  %-24s %8.0f connects/s (errors %d, slow %d)", label, rep+1, cfg.reps, d.title, r.Rate(), r.Errors, r.Slow)
				}
				return err
			})
			if err != nil {
				return fmt.Errorf("%s, %s connects/s: %w", label, d.title, err)
			}
		}
		for _, d := range order {
			err := d.counted(func() error {
				r, err := kit.MeasureRTT(ctx, d.pair(cfg.cpu), false, d.rttPort, cfg.duration)
				if err == nil {
					ph.runs[d.key].rtts = append(ph.runs[d.key].rtts, r)
					kit.Progress("%-8s rep %d/%d  %-24s RTT p50 %6.2f µs  p99 %6.2f µs", label, rep+1, cfg.reps, d.title, r.P50, r.P99)
				}
				return err
			})
			if err != nil {
				return fmt.Errorf("%s, %s latency: %w", label, d.title, err)
			}
		}
	}
	return nil
}

// replyPath runs one short connect run through d while tcpdump counts, on
// the underlay ports of d's two nodes, the client's packets into the entry
// node and the packets each node sends to the client.
func replyPath(ctx context.Context, cfg config, d *datapath) (replies, error) {
	specs := []struct {
		port, direction, filter string
		into                    func(*replies) *int
	}{
		{d.entry.port(), "out", "tcp and src host " + clientIP, func(r *replies) *int { return &r.fromClient }},
		{d.entry.port(), "in", "tcp and dst host " + clientIP, func(r *replies) *int { return &r.viaEntry }},
		{d.remote.port(), "in", "tcp and dst host " + clientIP, func(r *replies) *int { return &r.direct }},
	}
	var caps []*capture
	stopAll := func(r *replies) error {
		var errs []error
		for i, c := range caps {
			n, dropped, err := c.stop()
			errs = append(errs, err)
			if r != nil {
				*specs[i].into(r) = n
				r.dropped += dropped
			}
		}
		caps = nil
		return errors.Join(errs...)
	}
	for _, s := range specs {
		c, err := startCapture(ctx, s.port, s.direction, s.filter)
		if err != nil {
			_ = stopAll(nil)
			return replies{}, err
		}
		caps = append(caps, c)
	}
	conns, err := kit.MeasureConnects(ctx, d.pair(cfg.cpu), d.connPort, true, time.Second)
	var r replies
	if serr := stopAll(&r); err == nil {
		err = serr
	}
	r.conns = conns.Connects
	return r, err
}
