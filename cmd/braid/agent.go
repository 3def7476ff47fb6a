package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/braid-cni/braid/core/agent"
	"github.com/braid-cni/braid/core/etcdstore"
	"github.com/braid-cni/braid/core/store"
	"github.com/spf13/cobra"
)

// agentFlags are `braid agent`'s own flags.
type agentFlags struct {
	name, nodeIP, device, podCIDR string
	conflist, cniPath             string
	ds                            datastoreFlags
	clusterCIDR                   string
	nodeCIDRSize                  int
	leaseTTL                      time.Duration
	metricsAddress                string
	resync, gc, status            time.Duration
	logLevel                      string
}

func agentCmd(g *globals) *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "run the node agent: host the conflist's plugins and keep the node in line with the cluster",
		Long: "The agent launches every braid plugin of the node's conflist as a go-plugin server and\n" +
			"drives it (Reconcile on every change and periodically, GC, Status). With --datastore etcd\n" +
			"the node registers under a lease, claims a pod CIDR from --cluster-cidr, and follows the\n" +
			"other nodes and the services in etcd. With --datastore kubernetes it follows the API server:\n" +
			"its pod CIDR is its Node's spec.podCIDR. Stopping the agent leaves the datapath as it is.",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return runAgent(g, &f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", defaultNodeName(), "node name (default: $NODE_NAME, else the host name)")
	fl.StringVar(&f.nodeIP, "node-ip", "", "node IPv4 address on the underlay (required with etcd; with kubernetes it overrides the Node's InternalIP)")
	fl.StringVar(&f.device, "device", "", "node device facing the underlay (required with etcd and kubernetes)")
	fl.StringVar(&f.podCIDR, "pod-cidr", "", "local datastore: the node's pod CIDR (else the one braid node init recorded)")
	fl.StringVar(&f.conflist, "conflist", "/etc/cni/net.d/braid.conflist", "the node's conflist")
	fl.StringVar(&f.cniPath, "cni-path", defaultCNIPath(), "where the plugin binaries are (a PATH-style list)")
	f.ds.bind(fl, dsLocal)
	fl.StringVar(&f.clusterCIDR, "cluster-cidr", "", "etcd: the CIDR node pod CIDRs are carved from (required with etcd)")
	fl.IntVar(&f.nodeCIDRSize, "node-cidr-size", 24, "etcd: prefix length of each node's pod CIDR")
	fl.DurationVar(&f.leaseTTL, "lease-ttl", 15*time.Second, "etcd: a node whose agent is silent this long leaves the cluster")
	fl.StringVar(&f.metricsAddress, "metrics-address", ":9962", "address of /metrics and /healthz (empty: none)")
	fl.DurationVar(&f.resync, "resync-interval", 30*time.Second, "full reconcile of every plugin this often, changes or not")
	fl.DurationVar(&f.gc, "gc-interval", 5*time.Minute, "GC of every plugin this often")
	fl.DurationVar(&f.status, "status-interval", 10*time.Second, "plugin Status (map fill, counters) read this often")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func defaultNodeName() string {
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n
	}
	host, _ := os.Hostname()
	return host
}

func defaultCNIPath() string {
	if p := os.Getenv("CNI_PATH"); p != "" {
		return p
	}
	return "/opt/cni/bin"
}

func runAgent(g *globals, f *agentFlags) error {
	// Before anything is made: the plugin servers inherit the umask, and
	// go-plugin leaves their sockets at the mode it gives.
	syscall.Umask(0o077)
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: %w", f.logLevel, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	for name, d := range map[string]time.Duration{"resync-interval": f.resync, "gc-interval": f.gc, "status-interval": f.status} {
		if d <= 0 {
			return fmt.Errorf("--%s must be positive", name)
		}
	}
	cfg := agent.Config{
		Conflist: f.conflist, CNIPath: filepath.SplitList(f.cniPath),
		StateDir: g.stateDir, BPFRoot: g.bpfRoot, MetricsAddress: f.metricsAddress,
		ResyncInterval: f.resync, GCInterval: f.gc, StatusInterval: f.status, Log: log,
	}
	kind, err := f.ds.choose()
	if err != nil {
		return err
	}
	switch kind {
	case dsLocal:
		if f.podCIDR != "" {
			n, err := parseNode(f.name, f.nodeIP, f.podCIDR, f.device)
			if err != nil {
				return err
			}
			cfg.Node = n
		}
	case dsEtcd:
		m, err := etcdMember(f, log)
		if err != nil {
			return err
		}
		defer m.Client.Close()
		cfg.Source = m
	case dsKubernetes:
		if cfg.Node, err = kubernetesNode(f); err != nil {
			return err
		}
		src, c, err := kubernetesDatastore(f.ds.kubeconfig, cfg.Node, log)
		if err != nil {
			return err
		}
		defer c.Close()
		cfg.Source = src
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("agent running", "datastore", kind, "plugins", a.Plugins(), "metrics", f.metricsAddress)
	err = a.Run(ctx)
	log.Info("agent stopped; the datapath stays")
	return err
}

// kubernetesNode is what the agent's flags say of the node with the
// Kubernetes datastore: its name and device, and a node IP that overrides
// the Node object's.
func kubernetesNode(f *agentFlags) (store.Node, error) {
	n := store.Node{Name: f.name, Device: f.device}
	if f.name == "" || f.device == "" {
		return n, fmt.Errorf("--datastore kubernetes needs --name (or $NODE_NAME) and --device")
	}
	if f.podCIDR != "" {
		return n, fmt.Errorf("--pod-cidr is the local datastore's: with kubernetes the pod CIDR is the Node's spec.podCIDR")
	}
	if f.nodeIP != "" {
		ip, err := netip.ParseAddr(f.nodeIP)
		if err != nil || !ip.Is4() {
			return n, fmt.Errorf("--node-ip %q is not an IPv4 address", f.nodeIP)
		}
		n.NodeIP = ip
	}
	return n, nil
}

func etcdMember(f *agentFlags, log *slog.Logger) (*etcdstore.Member, error) {
	ip, err := netip.ParseAddr(f.nodeIP)
	if err != nil || !ip.Is4() {
		return nil, fmt.Errorf("--node-ip %q is not an IPv4 address", f.nodeIP)
	}
	if f.name == "" || f.device == "" {
		return nil, fmt.Errorf("--datastore etcd needs --name and --device")
	}
	n := store.Node{Name: f.name, NodeIP: ip, Device: f.device}
	if err := flagError(n.ValidateUnassigned()); err != nil { // the pod CIDR is claimed
		return nil, err
	}
	cluster, err := netip.ParsePrefix(f.clusterCIDR)
	if err != nil || !cluster.Addr().Is4() || cluster != cluster.Masked() {
		return nil, fmt.Errorf("--cluster-cidr %q is not an IPv4 CIDR without host bits", f.clusterCIDR)
	}
	if f.nodeCIDRSize < cluster.Bits() || f.nodeCIDRSize > 30 {
		return nil, fmt.Errorf("--node-cidr-size %d must be between the cluster CIDR's /%d and /30", f.nodeCIDRSize, cluster.Bits())
	}
	if f.leaseTTL < 2*time.Second {
		return nil, fmt.Errorf("--lease-ttl %s is below etcd's minimum of 2s", f.leaseTTL)
	}
	c, err := etcdstore.Connect(f.ds.etcd.config())
	if err != nil {
		return nil, err
	}
	return &etcdstore.Member{
		Client:      c,
		Node:        n,
		ClusterCIDR: cluster,
		NodeBits:    f.nodeCIDRSize,
		LeaseTTL:    f.leaseTTL,
		Log:         log,
	}, nil
}
