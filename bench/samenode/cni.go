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
)

// node is a "node": a network namespace with an uplink device, its own CNI
// network and, for braid, its own state dir and bpffs.
type node struct {
	name    string // ptp, braid, bridge
	index   int    // node IP 198.18.0.<index>, pods 198.19.<index>.0/24
	network string // CNI network name (the conflist's name)
}

func (n *node) netns() string   { return nsPrefix + "node-" + n.name }
func (n *node) dir() string     { return filepath.Join(labRoot, n.name) }
func (n *node) bpfRoot() string { return filepath.Join(n.dir(), "bpf") }
func (n *node) podCIDR() string { return fmt.Sprintf("198.19.%d.0/24", n.index) }

// uplink is the node device: one end of a veth pair whose both ends stay in
// the node netns, so nothing can leave the topology.
const uplink = "uplink0"

// addNode creates the node netns and writes its CNI network config.
func (l *lab) addNode(ctx context.Context, n *node) error {
	ns := n.netns()
	if err := addNetns(ctx, ns); err != nil {
		return err
	}
	steps := [][]string{
		{"ip", "link", "add", uplink, "mtu", "1500", "type", "veth", "peer", "name", uplink + "p"},
		{"ip", "addr", "add", fmt.Sprintf("198.18.0.%d/24", n.index), "dev", uplink},
		{"ip", "link", "set", uplink, "up"},
		{"ip", "link", "set", uplink + "p", "up"},
	}
	for _, s := range steps {
		if _, err := kit.NS(ns).Run(ctx, 10*time.Second, s[0], s[1:]...); err != nil {
			return err
		}
	}
	if err := setSysctls(ctx, ns, "net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	conf, err := l.conflist(n)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(l.confDir, n.network+".conflist"), conf, 0o600); err != nil {
		return err
	}
	if n.name != "braid" {
		return nil
	}
	_, err = kit.NS(ns).Run(ctx, 30*time.Second, filepath.Join(l.repo, "bin/braid"), "node", "init",
		"--name", n.netns(), "--node-ip", fmt.Sprintf("198.18.0.%d", n.index), "--pod-cidr", n.podCIDR(),
		"--device", uplink, "--state-dir", filepath.Join(n.dir(), "state"), "--bpf-root", n.bpfRoot())
	return err
}

// conflist is the node's network: braid's chain-configs/node-local.conflist
// with stateDir and bpfRoot injected, or a reference plugin with host-local.
func (l *lab) conflist(n *node) ([]byte, error) {
	hostLocal := map[string]any{
		"type":    "host-local",
		"ranges":  [][]map[string]string{{{"subnet": n.podCIDR()}}},
		"dataDir": filepath.Join(n.dir(), "ipam"),
	}
	var plugin map[string]any
	switch n.name {
	case "ptp":
		plugin = map[string]any{"type": "ptp", "mtu": 1500, "ipam": hostLocal}
	case "bridge":
		plugin = map[string]any{"type": "bridge", "bridge": "br0", "isGateway": true, "mtu": 1500, "ipam": hostLocal}
	case "braid":
		// Named bb-*: the sweep finds cnitool's cache entries by it.
		return kit.ChainConflist(l.repo, "node-local.conflist", n.network, func(p map[string]any) {
			p["stateDir"], p["bpfRoot"] = filepath.Join(n.dir(), "state"), n.bpfRoot()
		})
	default:
		return nil, fmt.Errorf("no config for node %s", n.name)
	}
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0", "name": n.network, "plugins": []any{plugin},
	}, "", "  ")
}

// cniAdd attaches pod to n's network through cnitool, run in the node's
// netns as a runtime would. It returns the pod's IPv4 address and how long
// cnitool took.
func (l *lab) cniAdd(ctx context.Context, n *node, pod string) (string, time.Duration, error) {
	start := time.Now()
	out, err := kit.NS(n.netns()).Run(ctx, time.Minute, l.cnitool(), "add", n.network, kit.NSPath(pod))
	took := time.Since(start)
	if err != nil {
		return "", took, err
	}
	l.attached = append(l.attached, attachment{node: n, pod: pod})
	var res struct {
		IPs []struct{ Address string } `json:"ips"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) == 0 {
		return "", took, fmt.Errorf("cnitool add %s %s: no address in result %q", n.network, pod, out)
	}
	p, err := netip.ParsePrefix(res.IPs[0].Address)
	if err != nil {
		return "", took, err
	}
	return p.Addr().String(), took, nil
}

// cniDel detaches pod from n's network through cnitool.
func (l *lab) cniDel(ctx context.Context, n *node, pod string) (time.Duration, error) {
	start := time.Now()
	_, err := kit.NS(n.netns()).Run(ctx, time.Minute, l.cnitool(), "del", n.network, kit.NSPath(pod))
	took := time.Since(start)
	if err == nil {
		for i, a := range l.attached {
			if a.node == n && a.pod == pod {
				l.attached = append(l.attached[:i], l.attached[i+1:]...)
				break
			}
		}
	}
	return took, err
}

func (l *lab) cnitool() string { return filepath.Join(l.repo, "bin/tools/cnitool") }
