package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
)

// Everything the bench creates is named or placed so that sweep finds it
// again after a crash: netns bx-*, files (and bpffs mounts) under labRoot,
// cnitool's cached results of the networks, which are named bx-*.
const (
	nsPrefix    = "bx-"
	labRoot     = "/run/braid-bench-crossnode"
	underlayNS  = nsPrefix + "underlay"
	bridgeName  = "br0" // the underlay switch, alone in underlayNS
	nodeDevice  = "eth0"
	underlayMTU = 1500
)

// footprint is what the bench makes on the machine, for kit.Lab.Sweep.
var footprint = kit.Lab{Prefix: nsPrefix, Root: labRoot}

// Sysctls are set in every netns explicitly: a new one does not inherit
// the root's, and the figures must not depend on the machine. Bridged
// traffic skips iptables (br_netfilter is built in here and on by default
// in every netns): the kernel paths compared get no netfilter detour.
var (
	baseSysctls = []string{
		"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
		"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
		"net.bridge.bridge-nf-call-iptables=0",
	}
	nodeSysctls = append(slices.Clone(baseSysctls), "net.ipv4.ip_forward=1", "net.ipv4.conf.all.accept_local=0")
)

// lab is the topology: the underlay, nodes, pods, CNI configs, and the CNI
// attachments to delete at teardown.
type lab struct {
	repo     string // repository root: bin/, bin/tools/, chain-configs/
	confDir  string // NETCONFPATH for cnitool
	attached []attachment
}

// attachment is one pod attached through cnitool.
type attachment struct {
	node *node
	pod  string // pod netns name
}

// newLab checks the binaries and tools, and builds the underlay switch.
func newLab(ctx context.Context, repo string) (*lab, error) {
	if err := kit.CheckSetup(repo, []string{"bin/braid", "bin/veth-ebpf", "bin/vxlan-tunnel", "bin/native-route",
		"bin/tools/cnitool", "bin/tools/cni/bridge", "bin/tools/cni/host-local"},
		[]string{"ip", "bridge", "nsenter", "taskset", "ping", "sockperf", "iperf3", "sysctl"}); err != nil {
		return nil, err
	}
	l := &lab{repo: repo, confDir: filepath.Join(labRoot, "net.d")}
	if err := os.MkdirAll(l.confDir, 0o700); err != nil {
		return nil, err
	}
	kit.UseCNI(repo, l.confDir, "eth0") // cnitool and the plugins it runs inherit these
	if err := addNetns(ctx, underlayNS, baseSysctls...); err != nil {
		return l, err
	}
	return l, run(ctx, underlayNS,
		[]string{"ip", "link", "add", bridgeName, "mtu", fmt.Sprint(underlayMTU), "type", "bridge"},
		[]string{"ip", "link", "set", bridgeName, "up"})
}

// addNetns creates a network namespace with loopback up and sysctls set.
func addNetns(ctx context.Context, name string, sysctls ...string) error {
	if err := kit.Sh(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	return run(ctx, name, []string{"ip", "link", "set", "lo", "up"}, append([]string{"sysctl", "-q", "-w"}, sysctls...))
}

// run runs each command in netns ns, stopping at the first failure.
func run(ctx context.Context, ns string, cmds ...[]string) error {
	for _, c := range cmds {
		if _, err := kit.NS(ns).Run(ctx, 30*time.Second, c[0], c[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// addNode creates n's netns with its eth0 on the underlay switch (the
// switch's port is named after the node).
func (l *lab) addNode(ctx context.Context, n *node) error {
	if err := addNetns(ctx, n.netns(), nodeSysctls...); err != nil {
		return err
	}
	mtu := fmt.Sprint(underlayMTU)
	if err := kit.Sh(ctx, "ip", "link", "add", nodeDevice, "netns", n.netns(), "mtu", mtu, "type", "veth",
		"peer", "name", n.name, "netns", underlayNS, "mtu", mtu); err != nil {
		return err
	}
	if err := run(ctx, n.netns(),
		[]string{"ip", "addr", "add", n.ip() + "/24", "dev", nodeDevice},
		[]string{"ip", "link", "set", nodeDevice, "up"}); err != nil {
		return err
	}
	return run(ctx, underlayNS, []string{"ip", "link", "set", n.name, "master", bridgeName, "up"})
}

// close deletes the attachments through cnitool (so that plugins clean up
// their own state), then sweeps whatever is left.
func (l *lab) close() {
	ctx := context.Background()
	for i := len(l.attached) - 1; i >= 0; i-- {
		a := l.attached[i]
		if err := l.cniDel(ctx, a.node, a.pod); err != nil {
			fmt.Fprintf(os.Stderr, "teardown: %v\n", err)
		}
	}
	l.attached = nil
	footprint.Sweep()
}
