package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
	"golang.org/x/sys/unix"
)

// node is a "node": a netns on the underlay (eth0 198.18.0.<index>, pods
// 198.19.<index>.0/24), either braid (chain-configs/native-lb.conflist,
// its own state dir, bpffs and cgroup) or kernel (the reference ptp
// plugin, for the kube-proxy-style iptables rules).
type node struct {
	name  string
	index int
	braid bool
	mode  string // braid: the dsr plugin's mode ("" is its default, dsr)
}

func (n *node) netns() string    { return nsPrefix + "n-" + n.name }
func (n *node) network() string  { return nsPrefix + n.name } // bs-*: sweep finds cnitool's cache by it
func (n *node) ip() string       { return fmt.Sprintf("198.18.0.%d", n.index) }
func (n *node) podCIDR() string  { return fmt.Sprintf("198.19.%d.0/24", n.index) }
func (n *node) dir() string      { return filepath.Join(labRoot, n.name) }
func (n *node) bpfRoot() string  { return filepath.Join(n.dir(), "bpf") }
func (n *node) stateDir() string { return filepath.Join(n.dir(), "state") }
func (n *node) cgroup() string   { return filepath.Join(cgroupBase, n.name) }
func (n *node) port() string     { return n.name } // its port on the underlay bridge

func (l *lab) conflistPath(n *node) string {
	return filepath.Join(l.confDir, n.network()+".conflist")
}

// addNode creates the node on the underlay, with a route to the external
// clients, and for braid its bpffs, cgroup and `braid node init`.
func (l *lab) addNode(ctx context.Context, n *node) error {
	if err := addNetns(ctx, n.netns(), nodeSysctls); err != nil {
		return err
	}
	if err := attach(ctx, n.netns(), n.port(), n.ip()+"/24"); err != nil {
		return err
	}
	if err := inNS(ctx, n.netns(), "ip", "route", "add", clientNet, "dev", device); err != nil {
		return err
	}
	if n.braid {
		if err := l.prepareBraid(ctx, n); err != nil {
			return err
		}
	}
	conf, err := l.conflist(n)
	if err != nil {
		return err
	}
	return os.WriteFile(l.conflistPath(n), conf, 0o600)
}

// prepareBraid mounts the node's own bpffs (outside /sys, which nsenter
// leaves alone), makes sock-lb's cgroup and runs `braid node init`.
func (l *lab) prepareBraid(ctx context.Context, n *node) error {
	for _, dir := range []string{n.bpfRoot(), n.cgroup()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	if err := unix.Mount("bpffs", n.bpfRoot(), "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs on %s: %w", n.bpfRoot(), err)
	}
	_, err := l.braid(ctx, n, "node", "init", "--name", n.name, "--node-ip", n.ip(), "--pod-cidr", n.podCIDR(), "--device", device)
	return err
}

// conflist is the node's network: native-lb.conflist with the node's
// paths (and dsr's mode), or ptp with host-local.
func (l *lab) conflist(n *node) ([]byte, error) {
	if !n.braid {
		return json.MarshalIndent(map[string]any{"cniVersion": "1.0.0", "name": n.network(), "plugins": []any{
			map[string]any{"type": "ptp", "mtu": 1500, "ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": n.podCIDR()}}},
				"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				"dataDir": filepath.Join(n.dir(), "ipam"),
			}},
		}}, "", "  ")
	}
	return kit.ChainConflist(l.repo, "native-lb.conflist", n.network(), func(p map[string]any) {
		p["stateDir"], p["bpfRoot"], p["logFile"] = n.stateDir(), n.bpfRoot(), filepath.Join(n.dir(), "cni.log")
		switch {
		case p["type"] == "sock-lb":
			p["cgroupRoot"] = n.cgroup() // the default, the host's root cgroup, would balance every socket of the machine
		case p["type"] == "dsr" && n.mode != "":
			p["mode"] = n.mode
		}
	})
}

// braid runs bin/braid inside the node with its state dir and bpf root.
func (l *lab) braid(ctx context.Context, n *node, args ...string) (string, error) {
	args = append(args, "--state-dir", n.stateDir(), "--bpf-root", n.bpfRoot())
	return kit.NS(n.netns()).Run(ctx, 2*time.Minute, filepath.Join(l.repo, "bin/braid"), args...)
}

// sync brings the node's datapath in line with its store (`braid sync`).
func (l *lab) sync(ctx context.Context, n *node) error {
	_, err := l.braid(ctx, n, "sync", "--conflist", l.conflistPath(n), "--cni-path", kit.CNIPath(l.repo))
	return err
}

// meet makes two braid nodes know each other (`braid node add`).
func (l *lab) meet(ctx context.Context, a, b *node) error {
	for _, p := range [][2]*node{{a, b}, {b, a}} {
		if _, err := l.braid(ctx, p[0], "node", "add", p[1].name, "--node-ip", p[1].ip(), "--pod-cidr", p[1].podCIDR()); err != nil {
			return err
		}
	}
	return nil
}

// pod is a pod netns attached to a node.
type pod struct {
	node *node
	ns   string
	ip   string
}

// in is where the pod's processes run: its netns, pinned to cpu, and on a
// braid node in the node's cgroup (sock-lb's cgroupRoot), as a runtime
// would put them.
func (p *pod) in(cpu string) kit.In {
	in := kit.In{NS: p.ns, CPUs: cpu}
	if p.node.braid {
		in.Cgroup = p.node.cgroup()
	}
	return in
}

// addPod attaches a new pod netns to n through cnitool, run in the node's
// netns as a runtime would.
func (l *lab) addPod(ctx context.Context, n *node, name string) (*pod, error) {
	p := &pod{node: n, ns: nsPrefix + "p-" + n.name + "-" + name}
	if err := addNetns(ctx, p.ns, hostSysctls); err != nil {
		return nil, err
	}
	out, err := kit.NS(n.netns()).Run(ctx, time.Minute, filepath.Join(l.repo, "bin/tools/cnitool"), "add", n.network(), kit.NSPath(p.ns))
	if err != nil {
		return nil, err
	}
	var res struct {
		IPs []struct{ Address string } `json:"ips"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) == 0 {
		return nil, fmt.Errorf("cnitool add %s %s: no address in result %q", n.network(), p.ns, out)
	}
	addr, err := netip.ParsePrefix(res.IPs[0].Address)
	if err != nil {
		return nil, err
	}
	p.ip = addr.Addr().String()
	return p, nil
}
