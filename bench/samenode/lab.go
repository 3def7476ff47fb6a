package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
)

// Everything the bench creates is named or placed so that sweep can find it
// again, even after a crash: netns bb-*, files under labRoot, CNI result
// cache entries of networks named bb-*.
const (
	nsPrefix = "bb-"
	labRoot  = "/run/braid-bench"
)

// footprint is what the bench makes on the machine, for kit.Lab.Sweep.
var footprint = kit.Lab{Prefix: nsPrefix, Root: labRoot}

// lab is the bench's topology: node and pod namespaces, CNI configs, and
// the CNI attachments to delete at teardown.
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

func newLab(repo string) (*lab, error) {
	if err := kit.CheckSetup(repo, []string{"bin/braid", "bin/veth-ebpf", "bin/tools/cnitool", "bin/tools/cni/ptp",
		"bin/tools/cni/bridge", "bin/tools/cni/host-local"},
		[]string{"ip", "nsenter", "taskset", "ping", "sockperf", "iperf3", "sysctl"}); err != nil {
		return nil, err
	}
	l := &lab{repo: repo, confDir: filepath.Join(labRoot, "net.d")}
	if err := os.MkdirAll(l.confDir, 0o700); err != nil {
		return nil, err
	}
	kit.UseCNI(repo, l.confDir, "eth0") // cnitool and the plugins it runs inherit these
	return l, nil
}

// addNetns creates a network namespace with loopback up and rp_filter off
// (a new netns does not inherit sysctls from the root one).
func addNetns(ctx context.Context, name string) error {
	if err := kit.Sh(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	if _, err := kit.NS(name).Run(ctx, 10*time.Second, "ip", "link", "set", "lo", "up"); err != nil {
		return err
	}
	return setSysctls(ctx, name, "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
}

func setSysctls(ctx context.Context, netns string, kv ...string) error {
	_, err := kit.NS(netns).Run(ctx, 10*time.Second, "sysctl", append([]string{"-q", "-w"}, kv...)...)
	return err
}

// plainPair is the limit: two pod namespaces joined by one veth pair, no
// node in between.
func plainPair(ctx context.Context) (*datapath, error) {
	d := &datapath{key: "plain", title: "plain veth pair", client: nsPrefix + "plain-a", server: nsPrefix + "plain-b",
		clientIP: "198.19.1.2", serverIP: "198.19.1.3"}
	for _, ns := range []string{d.client, d.server} {
		if err := addNetns(ctx, ns); err != nil {
			return nil, err
		}
	}
	if err := kit.Sh(ctx, "ip", "link", "add", "eth0", "netns", d.client, "type", "veth", "peer", "name", "eth0", "netns", d.server); err != nil {
		return nil, err
	}
	for ns, ip := range map[string]string{d.client: d.clientIP, d.server: d.serverIP} {
		if _, err := kit.NS(ns).Run(ctx, 10*time.Second, "ip", "addr", "add", ip+"/24", "dev", "eth0"); err != nil {
			return nil, err
		}
		if _, err := kit.NS(ns).Run(ctx, 10*time.Second, "ip", "link", "set", "eth0", "up"); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// cniPair attaches two pods to n through cnitool; they are measured as a
// datapath.
func (l *lab) cniPair(ctx context.Context, n *node, title string) (*datapath, error) {
	d := &datapath{key: n.name, title: title, client: nsPrefix + n.name + "-a", server: nsPrefix + n.name + "-b"}
	for _, pod := range []*string{&d.client, &d.server} {
		if err := addNetns(ctx, *pod); err != nil {
			return nil, err
		}
		ip, _, err := l.cniAdd(ctx, n, *pod)
		if err != nil {
			return nil, err
		}
		if pod == &d.client {
			d.clientIP = ip
		} else {
			d.serverIP = ip
		}
	}
	if n.name == "braid" {
		d.counters = filepath.Join(n.bpfRoot(), "veth-ebpf", "counters")
	}
	return d, nil
}

// checkReachable pings the server pod from the client pod (bounded).
func checkReachable(ctx context.Context, d *datapath) error {
	if _, err := kit.NS(d.client).Run(ctx, 10*time.Second, "ping", "-c", "2", "-i", "0.2", "-W", "2", d.serverIP); err != nil {
		return fmt.Errorf("%s: %s cannot reach %s: %w", d.title, d.client, d.serverIP, err)
	}
	return nil
}

// close deletes the attachments through cnitool (so plugins clean up their
// own state), then sweeps whatever is left.
func (l *lab) close() {
	ctx := context.Background()
	for i := len(l.attached) - 1; i >= 0; i-- {
		a := l.attached[i]
		if _, err := l.cniDel(ctx, a.node, a.pod); err != nil {
			fmt.Fprintf(os.Stderr, "teardown: %v\n", err)
		}
	}
	l.attached = nil
	footprint.Sweep()
}
