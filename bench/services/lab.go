package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
	"github.com/braid-cni/braid/internal/testenv"
)

// Everything the bench makes is named or placed so that sweep finds it
// again, even after a crash: netns bs-*, files under labRoot, cgroups under
// cgroupBase, cnitool's cached results of networks named bs-*. iptables
// rules live inside the bs-* namespaces only.
const (
	nsPrefix   = "bs-"
	labRoot    = "/run/braid-bench-services"
	cgroupBase = "/sys/fs/cgroup/unified/braid-bench-services"
)

// footprint is what the bench makes on the machine, for kit.Lab.Sweep.
var footprint = kit.Lab{Prefix: nsPrefix, Root: labRoot, Cgroup: cgroupBase}

// The underlay: a bridge alone in its netns; nodes and the external client
// hang off it with a veth each.
const (
	underlayNS = nsPrefix + "u"
	bridge     = "br0"
	device     = "eth0" // every node's, pod's and the client's interface
	clientNS   = nsPrefix + "client"
	clientIP   = "198.18.1.10"
	clientNet  = "198.18.1.0/24"
	nodeNet    = "198.18.0.0/24"
)

// Sysctls of every netns: a new netns does not inherit the root's, and the
// figures must not depend on the machine. IPv6 is off (braid is
// IPv4-only; its chatter would only add noise).
var (
	baseSysctls = []string{
		"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
		"net.ipv4.conf.all.accept_local=0",
		"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
	}
	nodeSysctls  = append([]string{"net.ipv4.ip_forward=1"}, baseSysctls...)
	hostSysctls  = append([]string{"net.ipv4.ip_forward=0"}, baseSysctls...)
	bridgeSysctl = []string{ // br_netfilter is built in: bridged frames must not meet iptables
		"net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0", "net.bridge.bridge-nf-call-arptables=0",
	}
)

// lab is the bench's topology.
type lab struct {
	repo    string
	confDir string // NETCONFPATH for cnitool
}

func newLab(repo string) (*lab, error) {
	if err := kit.CheckSetup(repo, []string{"bin/braid", "bin/veth-ebpf", "bin/sock-lb", "bin/dsr", "bin/native-route",
		"bin/tools/cnitool", "bin/tools/cni/ptp", "bin/tools/cni/host-local"},
		[]string{"ip", "bridge", "nsenter", "taskset", "ping", "sockperf", "sysctl", "iptables-restore", "tcpdump"}); err != nil {
		return nil, err
	}
	if testenv.Cgroup2() != filepath.Dir(cgroupBase) {
		return nil, fmt.Errorf("no cgroup v2 mount at %s", filepath.Dir(cgroupBase))
	}
	l := &lab{repo: repo, confDir: filepath.Join(labRoot, "net.d")}
	for _, dir := range []string{l.confDir, cgroupBase} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	kit.UseCNI(repo, l.confDir, device) // cnitool and the plugins it runs inherit these
	return l, nil
}

// addNetns creates a network namespace with loopback up and sysctls set.
func addNetns(ctx context.Context, name string, sysctls []string) error {
	if err := kit.Sh(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	if err := inNS(ctx, name, "ip", "link", "set", "lo", "up"); err != nil {
		return err
	}
	return inNS(ctx, name, "sysctl", append([]string{"-q", "-w"}, sysctls...)...)
}

// inNS runs a short command inside netns ns.
func inNS(ctx context.Context, ns, name string, args ...string) error {
	_, err := kit.NS(ns).Run(ctx, 30*time.Second, name, args...)
	return err
}

// makeUnderlay creates the underlay bridge and the external client on it.
func makeUnderlay(ctx context.Context) error {
	if err := addNetns(ctx, underlayNS, append(hostSysctls, bridgeSysctl...)); err != nil {
		return err
	}
	for _, s := range [][]string{{"ip", "link", "add", bridge, "type", "bridge"}, {"ip", "link", "set", bridge, "up"}} {
		if err := inNS(ctx, underlayNS, s[0], s[1:]...); err != nil {
			return err
		}
	}
	if err := addNetns(ctx, clientNS, hostSysctls); err != nil {
		return err
	}
	if err := attach(ctx, clientNS, "client", clientIP+"/24"); err != nil {
		return err
	}
	// The client is outside the cluster: on-link to the nodes, nothing else.
	return inNS(ctx, clientNS, "ip", "route", "add", nodeNet, "dev", device)
}

// attach joins netns ns to the underlay bridge: its eth0 gets addr, the
// bridge side is named port (where captures look).
func attach(ctx context.Context, ns, port, addr string) error {
	steps := [][]string{
		{"ip", "link", "add", port, "mtu", "1500", "type", "veth", "peer", "name", device, "netns", ns},
		{"ip", "link", "set", port, "master", bridge, "up"},
	}
	for _, s := range steps {
		if err := inNS(ctx, underlayNS, s[0], s[1:]...); err != nil {
			return err
		}
	}
	for _, s := range [][]string{{"ip", "addr", "add", addr, "dev", device}, {"ip", "link", "set", device, "up"}} {
		if err := inNS(ctx, ns, s[0], s[1:]...); err != nil {
			return err
		}
	}
	return waitForwarding(ctx, port)
}

// waitForwarding waits until the bridge forwards through port: a frame
// sent before that is lost, and a lost first ARP costs a second.
func waitForwarding(ctx context.Context, port string) error {
	for i := 0; i < 300; i++ {
		out, err := kit.NS(underlayNS).Run(ctx, 10*time.Second, "bridge", "link", "show", "dev", port)
		if err == nil && strings.Contains(out, "state forwarding") {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("bridge port %s is not forwarding after 3s", port)
}
