// Package chained implements the CNI verbs of a braid chained plugin (one
// that runs after an interface plugin): the plugin supplies its datapath,
// this package supplies ADD, DEL, CHECK, GC, STATUS and reconcile.
//
// The shape every chained plugin shares: node-wide state (devices, routes,
// maps, node-wide attachments) reconciled with the store on every ADD, by
// GC and by `braid sync`; and optionally a program per pod, attached at tcx
// ingress of the pod's host veth after the programs already there, pinned
// under the attachment's id so DEL finds it with no state.
package chained

import (
	"errors"
	"log/slog"

	"github.com/braid-cni/braid/core/bpffs"
	"github.com/braid-cni/braid/core/chain"
	"github.com/braid-cni/braid/core/cnierr"
	"github.com/braid-cni/braid/core/config"
	"github.com/braid-cni/braid/core/logging"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/store"
	"github.com/cilium/ebpf"
	"github.com/containernetworking/cni/pkg/skel"
)

// Datapath is what a chained plugin implements.
type Datapath interface {
	// Reconcile brings the plugin's node-wide state in line with the cluster.
	Reconcile(c Cluster, r *plugin.Report) error
	// CheckNode verifies the node-wide state and says what is wrong.
	CheckNode(c Cluster) error
	// PodProgram runs at tcx ingress of each pod's host veth; nil for none.
	PodProgram() *ebpf.Program
	// AdjustPod changes a new pod's interfaces and result where the plugin
	// must (the overlay's MTU, say); CheckPod verifies that it still holds.
	AdjustPod(c Cluster, a *chain.Attachment) error
	CheckPod(c Cluster, a *chain.Attachment) error
	Close()
}

// Cluster is the node's view of the cluster, read from the store.
type Cluster struct {
	Node     store.Node
	Peers    []store.Peer
	Services []store.Service
}

// Plugin describes one chained plugin.
type Plugin struct {
	Name string
	// Parse decodes and validates the plugin's network config.
	Parse func(stdin []byte) (config.Plugin, error)
	// Open loads the plugin's datapath for one call.
	Open func(conf config.Plugin) (Datapath, error)
	// Counters names the indexes of the plugin's counters map (optional).
	Counters []string
}

// Main runs the plugin binary.
func (p Plugin) Main() {
	plugin.Main(p.Name, skel.CNIFuncs{
		Add: p.cmdAdd, Del: p.cmdDel, Check: p.cmdCheck, GC: p.cmdGC, Status: p.cmdStatus,
	}, p.reconcile, plugin.WithGC(p.collect), plugin.WithCounters(p.Counters...))
}

// call is one invocation's hold on the node.
type call struct {
	conf    config.Plugin
	common  *config.Common
	log     *slog.Logger
	store   *store.Store
	dp      Datapath
	cluster Cluster
	closers []func()
}

func (p Plugin) open(stdin []byte, verb string) (*call, error) {
	conf, err := p.Parse(stdin)
	if err != nil {
		return nil, err
	}
	c := &call{conf: conf, common: conf.Shared()}
	log, closeLog := logging.New(c.common.LogFile, c.common.Level(), p.Name)
	c.log, c.closers = log.With("verb", verb), []func(){closeLog}
	if c.store, err = plugin.OpenStore(*c.common); err != nil {
		c.Close()
		return nil, err
	}
	c.closers = append(c.closers, func() { c.store.Close() })
	if err := c.readCluster(); err != nil {
		c.Close()
		return nil, err
	}
	if c.dp, err = p.Open(conf); err != nil {
		c.Close()
		return nil, cnierr.Wrap(err, "%s", p.Name)
	}
	c.closers = append(c.closers, c.dp.Close)
	return c, nil
}

func (c *call) readCluster() error {
	return c.store.View(func(tx *store.Tx) error {
		node, err := tx.Node()
		if errors.Is(err, store.ErrNotInitialized) {
			return cnierr.NotAvailable("%v (stateDir %s)", err, c.common.StateDir)
		}
		if err != nil {
			return err
		}
		peers, err := tx.Peers()
		if err != nil {
			return err
		}
		services, err := tx.Services()
		c.cluster = Cluster{Node: node, Peers: peers, Services: services}
		return err
	})
}

func (c *call) Close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
}

// podPin is where the per-pod link of an attachment is pinned.
func (c *call) podPin(plugin, containerID, ifName string) string {
	return bpffs.LinkPin(c.common.BPFRoot, plugin, store.AttachmentID(containerID, ifName)+"_ingress")
}

// NodePin is where a plugin pins a node-wide link on device dev.
func NodePin(bpfRoot, plugin, dev, dir string) string {
	return bpffs.LinkPin(bpfRoot, plugin, "dev-"+dev+"_"+dir)
}
