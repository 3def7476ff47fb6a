package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/braid-cni/braid/bench/internal/kit"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/plugins/counters"
)

// datapath is one way from a client to the measured service's backend: the
// connect loop dials target:connPort, sockperf target:rttPort.
type datapath struct {
	key, title        string
	client, server    kit.In // CPUs are set per measurement
	serverIP, target  string
	connPort, rttPort int
	counters          []*counterSet // braid plugins' counters, read around each run
	entry, remote     *node         // NodePort: the node the client dials, the backend's node
}

// pair is d's client and server, both pinned to cpu.
func (d *datapath) pair(cpu string) kit.Pair {
	c, s := d.client, d.server
	c.CPUs, s.CPUs = cpu, cpu
	return kit.Pair{Client: c, Server: s, ServerIP: d.serverIP, Target: d.target}
}

// counterSet is one plugin's counters on one node, and how much they grew
// over a datapath's runs.
type counterSet struct {
	node   *node
	plugin string
	names  []string
	delta  []uint64
}

// countersOf is plugin's counters on n, named by plugins/counters.
func countersOf(n *node, plugin string) *counterSet {
	names := counters.Names(plugin)
	return &counterSet{node: n, plugin: plugin, names: names, delta: make([]uint64, len(names))}
}

func (c *counterSet) read() ([]uint64, error) {
	v, err := maps.PinnedCounters(filepath.Join(c.node.bpfRoot(), c.plugin, maps.CountersPin))
	if err != nil {
		return nil, err
	}
	return v[:len(c.names)], nil
}

// counted runs fn and adds the growth of d's counters over it.
func (d *datapath) counted(fn func() error) error {
	before := make([][]uint64, len(d.counters))
	for i, c := range d.counters {
		v, err := c.read()
		if err != nil {
			return fmt.Errorf("%s counters on %s: %w", c.plugin, c.node.name, err)
		}
		before[i] = v
	}
	if err := fn(); err != nil {
		return err
	}
	for i, c := range d.counters {
		after, err := c.read()
		if err != nil {
			return fmt.Errorf("%s counters on %s: %w", c.plugin, c.node.name, err)
		}
		for j := range after {
			c.delta[j] += after[j] - before[i][j]
		}
	}
	return nil
}

// check renders the counters that moved over d's runs, by name.
func (d *datapath) check() string {
	var parts []string
	for _, c := range d.counters {
		var moved []string
		for i, v := range c.delta {
			if v != 0 {
				moved = append(moved, fmt.Sprintf("%s +%d", c.names[i], v))
			}
		}
		if len(moved) == 0 {
			moved = []string{"none moved"}
		}
		parts = append(parts, fmt.Sprintf("%s on %s: %s", c.plugin, c.node.name, strings.Join(moved, ", ")))
	}
	return strings.Join(parts, "; ")
}
