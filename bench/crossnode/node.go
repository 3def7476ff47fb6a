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

// node is a "node" (ARCHITECTURE.md's test topology): netns bx-<name>
// whose eth0, 198.18.0.<index>/24, is on the underlay switch; its pods
// come from 198.19.<index>.0/24. A braid node has its own state dir and
// bpffs (mounted by `braid node init`) under labRoot/<name>.
type node struct {
	name  string
	index int
}

func (n *node) netns() string    { return nsPrefix + n.name }
func (n *node) pod() string      { return nsPrefix + n.name + "-pod" }
func (n *node) network() string  { return nsPrefix + n.name } // its CNI network (conflist name)
func (n *node) ip() string       { return fmt.Sprintf("198.18.0.%d", n.index) }
func (n *node) podCIDR() string  { return fmt.Sprintf("198.19.%d.0/24", n.index) }
func (n *node) dir() string      { return filepath.Join(labRoot, n.name) }
func (n *node) stateDir() string { return filepath.Join(n.dir(), "state") }
func (n *node) bpfRoot() string  { return filepath.Join(n.dir(), "bpf") }

// braid runs bin/braid in n's netns with n's state dir and bpffs.
func (l *lab) braid(ctx context.Context, n *node, args ...string) error {
	args = append(args, "--state-dir", n.stateDir(), "--bpf-root", n.bpfRoot())
	_, err := kit.NS(n.netns()).Run(ctx, time.Minute, filepath.Join(l.repo, "bin/braid"), args...)
	return err
}

// braidConflist is chain-configs/<file> pointed at n: stateDir, bpfRoot
// and logFile set in every plugin, and the network named after n.
func (l *lab) braidConflist(n *node, file string) ([]byte, error) {
	return kit.ChainConflist(l.repo, file, n.network(), func(p map[string]any) {
		p["stateDir"], p["bpfRoot"], p["logFile"] = n.stateDir(), n.bpfRoot(), filepath.Join(n.dir(), "cni.log")
	})
}

// bridgeConflist is the reference bridge plugin with host-local from n's
// pod CIDR, as flannel's CNI config has it: the pods on bridge cni0, whose
// address is their default gateway, at the given MTU.
func bridgeConflist(n *node, mtu int) ([]byte, error) {
	bridge := map[string]any{
		"type": "bridge", "bridge": "cni0", "isDefaultGateway": true, "hairpinMode": true, "mtu": mtu,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  [][]map[string]string{{{"subnet": n.podCIDR()}}},
			"dataDir": filepath.Join(n.dir(), "ipam"),
		},
	}
	return json.MarshalIndent(map[string]any{"cniVersion": "1.0.0", "name": n.network(), "plugins": []any{bridge}}, "", "  ")
}

// writeConflist puts n's network where cnitool looks (NETCONFPATH) and
// returns its path.
func (l *lab) writeConflist(n *node, conf []byte) (string, error) {
	path := filepath.Join(l.confDir, n.network()+".conflist")
	return path, os.WriteFile(path, conf, 0o600)
}

// addPod creates n's pod netns and attaches it to n's network through
// cnitool run in the node's netns, as a runtime would. It returns the pod's
// IPv4 address.
func (l *lab) addPod(ctx context.Context, n *node) (string, error) {
	if err := addNetns(ctx, n.pod(), baseSysctls...); err != nil {
		return "", err
	}
	out, err := kit.NS(n.netns()).Run(ctx, time.Minute, l.cnitool(), "add", n.network(), kit.NSPath(n.pod()))
	if err != nil {
		return "", err
	}
	l.attached = append(l.attached, attachment{node: n, pod: n.pod()})
	var res struct {
		IPs []struct{ Address string } `json:"ips"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) == 0 {
		return "", fmt.Errorf("cnitool add %s: no address in result %q", n.network(), out)
	}
	p, err := netip.ParsePrefix(res.IPs[0].Address)
	if err != nil {
		return "", err
	}
	return p.Addr().String(), nil
}

// cniDel detaches pod from n's network through cnitool.
func (l *lab) cniDel(ctx context.Context, n *node, pod string) error {
	_, err := kit.NS(n.netns()).Run(ctx, time.Minute, l.cnitool(), "del", n.network(), kit.NSPath(pod))
	return err
}

func (l *lab) cnitool() string { return filepath.Join(l.repo, "bin/tools/cnitool") }
