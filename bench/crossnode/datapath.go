package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
)

// datapath is one way for a pod on node a to talk to a pod on node b. Each
// has its own two nodes, so nothing one sets up can help or hinder another.
type datapath struct {
	key, title string
	a, b       *node // the client's node and the server's
	// braid: the chain-configs conflist and the routing plugin's counters;
	// kernel paths: how the nodes route to each other, and the pods' MTU.
	chain    string
	counters *counterSet
	prepare  func(ctx context.Context, a, b *node) error
	mtu      int

	clientIP, serverIP string
	podMTU             int               // as the client pod's eth0 has it
	delta              map[string]uint64 // counters over all measurements, both nodes
}

// datapaths are the four compared, with distinct node indexes.
func datapaths() []*datapath {
	return []*datapath{
		{key: "vxlan", title: "braid vxlan", a: &node{"vx1", 1}, b: &node{"vx2", 2},
			chain: "vxlan.conflist", counters: &vxlanCounters},
		{key: "flannel", title: "flannel-style vxlan", a: &node{"fl3", 3}, b: &node{"fl4", 4},
			prepare: flannelRoutes, mtu: underlayMTU - vxlanOverhead},
		{key: "native", title: "braid native", a: &node{"nr5", 5}, b: &node{"nr6", 6},
			chain: "native.conflist", counters: &nativeCounters},
		{key: "hostgw", title: "host-gw-style", a: &node{"hg7", 7}, b: &node{"hg8", 8},
			prepare: hostGWRoutes, mtu: underlayMTU},
	}
}

// pair is d's two pods, the client pinned to clientCPU and the server to
// serverCPU.
func (d *datapath) pair(clientCPU, serverCPU string) kit.Pair {
	return kit.Pair{
		Client:   kit.In{NS: d.a.pod(), CPUs: clientCPU},
		Server:   kit.In{NS: d.b.pod(), CPUs: serverCPU},
		ServerIP: d.serverIP,
	}
}

// build makes d's nodes, their routing to each other and one pod on each.
func (l *lab) build(ctx context.Context, d *datapath) error {
	for _, n := range []*node{d.a, d.b} {
		if err := l.addNode(ctx, n); err != nil {
			return fmt.Errorf("node %s: %w", n.name, err)
		}
	}
	if d.chain != "" {
		if err := l.braidNodes(ctx, d.a, d.b); err != nil {
			return err
		}
	} else if err := d.prepare(ctx, d.a, d.b); err != nil {
		return err
	}
	ips := map[*node]*string{d.a: &d.clientIP, d.b: &d.serverIP}
	for _, n := range []*node{d.a, d.b} {
		conf, err := l.conflist(d, n)
		if err == nil {
			_, err = l.writeConflist(n, conf)
		}
		if err == nil {
			*ips[n], err = l.addPod(ctx, n)
		}
		if err != nil {
			return fmt.Errorf("pod on %s: %w", n.name, err)
		}
	}
	var err error
	d.podMTU, err = linkMTU(ctx, d.a.pod(), "eth0")
	return err
}

func (l *lab) conflist(d *datapath, n *node) ([]byte, error) {
	if d.chain != "" {
		return l.braidConflist(n, d.chain)
	}
	return bridgeConflist(n, d.mtu)
}

// braidNodes prepares both nodes with `braid node init` (which mounts the
// node's bpffs) and tells each about the other with `braid node add`,
// before any pod: the first ADD then finds the peer and sets up its
// routing, as `braid sync` would.
func (l *lab) braidNodes(ctx context.Context, a, b *node) error {
	for _, n := range []*node{a, b} {
		if err := l.braid(ctx, n, "node", "init", "--name", n.name, "--node-ip", n.ip(),
			"--pod-cidr", n.podCIDR(), "--device", nodeDevice); err != nil {
			return err
		}
	}
	for _, p := range [][2]*node{{a, b}, {b, a}} {
		n, peer := p[0], p[1]
		if err := l.braid(ctx, n, "node", "add", peer.name, "--node-ip", peer.ip(), "--pod-cidr", peer.podCIDR()); err != nil {
			return err
		}
	}
	return nil
}

// checkReachable pings the server pod from the client pod (bounded).
func checkReachable(ctx context.Context, d *datapath) error {
	if _, err := kit.NS(d.a.pod()).Run(ctx, 15*time.Second, "ping", "-c", "3", "-i", "0.2", "-W", "2", d.serverIP); err != nil {
		return fmt.Errorf("%s: the pod on %s cannot reach %s: %w", d.title, d.a.name, d.serverIP, err)
	}
	return nil
}

var mtuRE = regexp.MustCompile(` mtu (\d+) `)

// linkMTU is the MTU of device dev in netns ns.
func linkMTU(ctx context.Context, ns, dev string) (int, error) {
	out, err := kit.NS(ns).Run(ctx, 10*time.Second, "ip", "-o", "link", "show", "dev", dev)
	if err != nil {
		return 0, err
	}
	m := mtuRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no mtu in %q", out)
	}
	return strconv.Atoi(m[1])
}
