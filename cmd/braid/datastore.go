package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/braid-cni/braid/core/datastore"
	"github.com/braid-cni/braid/core/etcdstore"
	"github.com/braid-cni/braid/core/k8sstore"
	"github.com/braid-cni/braid/core/store"
	"github.com/spf13/pflag"
)

// Datastores.
const (
	dsLocal      = "local"
	dsEtcd       = "etcd"
	dsKubernetes = "kubernetes"
)

// datastoreFlags select the cluster datastore: of the commands that read
// or edit cluster state (node add/del/list, service …), and of the agent.
type datastoreFlags struct {
	kind       string
	kubeconfig string
	etcd       etcdFlags
}

// bind adds the flags; def is --datastore's default ("" for the CLI: the
// datastore the other flags name).
func (d *datastoreFlags) bind(f *pflag.FlagSet, def string) {
	f.StringVar(&d.kind, "datastore", def, "where the cluster's state is: local (the node store), etcd or kubernetes (default: etcd with --etcd-endpoints, kubernetes with --kubeconfig, else local)")
	f.StringVar(&d.kubeconfig, "kubeconfig", "", "kubernetes: the kubeconfig file (empty: the in-cluster config); set, the command works on the Kubernetes cluster")
	d.etcd.bind(f)
}

// choose is the datastore the flags select, or why they contradict.
func (d *datastoreFlags) choose() (string, error) {
	kind := d.kind
	if kind == "" {
		switch {
		case d.kubeconfig != "":
			kind = dsKubernetes
		case d.etcd.enabled():
			kind = dsEtcd
		default:
			kind = dsLocal
		}
	}
	switch {
	case kind != dsLocal && kind != dsEtcd && kind != dsKubernetes:
		return "", fmt.Errorf("--datastore must be local, etcd or kubernetes, not %q", kind)
	case kind == dsEtcd && !d.etcd.enabled():
		return "", errors.New("--datastore etcd needs --etcd-endpoints")
	case kind != dsEtcd && d.etcd.enabled():
		return "", fmt.Errorf("--etcd-endpoints is for --datastore etcd, not %s", kind)
	case kind != dsKubernetes && d.kubeconfig != "":
		return "", fmt.Errorf("--kubeconfig is for --datastore kubernetes, not %s", kind)
	}
	return kind, nil
}

// kubernetesDatastore is the Kubernetes datastore: the Source node's agent
// follows and the Cluster the CLI reads, from kubeconfig (empty: the
// in-cluster config). node is this node as the flags say it: its name, and
// the node IP and device that override the Node object's (the agent's).
// The one seam between the CLI and core/k8sstore.
func kubernetesDatastore(kubeconfig string, node store.Node, log *slog.Logger) (datastore.Source, datastore.Cluster, error) {
	d, err := k8sstore.New(k8sstore.Config{Kubeconfig: kubeconfig, NodeName: node.Name, NodeIP: node.NodeIP, Device: node.Device, Log: log})
	if err != nil {
		return nil, nil, err
	}
	return d, d, nil
}

// cluster is the datastore a CLI command works on, chosen once from the
// flags, with what to tell the user about it.
type cluster struct {
	datastore.Cluster
	// name is the datastore in messages ("etcd http://…").
	name string
	// next says what makes a change take effect.
	next string
}

// clusterTimeout bounds a CLI command's work against a remote datastore:
// a person is waiting. (The node store has its own lock wait.)
const clusterTimeout = 10 * time.Second

// openCluster opens the datastore the flags select.
func (g *globals) openCluster() (*cluster, error) {
	kind, err := g.ds.choose()
	if err != nil {
		return nil, err
	}
	switch kind {
	case dsEtcd:
		c, err := etcdstore.Connect(g.ds.etcd.config())
		if err != nil {
			return nil, err
		}
		return &cluster{Cluster: c, name: "etcd " + strings.Join(g.ds.etcd.endpoints, ","), next: "every agent follows etcd"}, nil
	case dsKubernetes:
		_, c, err := kubernetesDatastore(g.ds.kubeconfig, store.Node{Name: g.selfName()}, slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, err
		}
		return &cluster{Cluster: c, name: "the Kubernetes API server", next: "every agent follows the API server"}, nil
	}
	return &cluster{Cluster: datastore.NewLocal(g.stateDir), name: "the node store", next: syncHint}, nil
}

// selfName is this node's name: $NODE_NAME (as a DaemonSet sets it), else
// the identity in the node store, else none.
func (g *globals) selfName() string {
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n
	}
	var name string
	_ = g.view(func(tx *store.Tx) error {
		n, err := tx.Node()
		name = n.Name
		return err
	})
	return name
}

// withCluster runs fn on the chosen datastore with a deadline.
func (g *globals) withCluster(fn func(context.Context, *cluster) error) error {
	c, err := g.openCluster()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := fn(ctx, c); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s did not answer within %s: %w", c.name, clusterTimeout, err)
		}
		return err
	}
	return nil
}

// etcdFlags say how to reach etcd.
type etcdFlags struct {
	endpoints []string
	cert      string
	key       string
	ca        string
	prefix    string
}

func (e *etcdFlags) bind(f *pflag.FlagSet) {
	f.StringSliceVar(&e.endpoints, "etcd-endpoints", nil, "etcd client URLs (comma-separated); set, the command works on the cluster in etcd")
	f.StringVar(&e.cert, "etcd-cert", "", "client certificate for etcd (TLS)")
	f.StringVar(&e.key, "etcd-key", "", "client key for etcd (TLS)")
	f.StringVar(&e.ca, "etcd-ca", "", "CA bundle that signed etcd's server certificate (TLS)")
	f.StringVar(&e.prefix, "etcd-prefix", etcdstore.DefaultPrefix, "key prefix of braid's state in etcd")
}

func (e *etcdFlags) enabled() bool { return len(e.endpoints) > 0 }

func (e *etcdFlags) config() etcdstore.Config {
	return etcdstore.Config{Endpoints: e.endpoints, CertFile: e.cert, KeyFile: e.key, CAFile: e.ca, Prefix: e.prefix}
}
