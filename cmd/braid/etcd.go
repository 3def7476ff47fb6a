package main

import (
	"context"
	"fmt"
	"time"

	"github.com/braid-cni/braid/core/etcdstore"
	"github.com/braid-cni/braid/core/store"
	"github.com/spf13/pflag"
)

// etcdFlags select etcd instead of the node store for the commands that
// edit cluster state (service …, node list/del) and configure the agent.
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

// etcdTimeout bounds a CLI command's work against etcd: a person is waiting.
const etcdTimeout = 10 * time.Second

// withEtcd runs fn with a client and a deadline.
func (g *globals) withEtcd(fn func(context.Context, *etcdstore.Client) error) error {
	c, err := etcdstore.Connect(g.etcd.config())
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), etcdTimeout)
	defer cancel()
	if err := fn(ctx, c); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("etcd %v did not answer within %s: %w", g.etcd.endpoints, etcdTimeout, err)
		}
		return err
	}
	return nil
}

func (g *globals) etcdPutServices(svcs []store.Service) error {
	err := g.withEtcd(func(ctx context.Context, c *etcdstore.Client) error { return c.PutServices(ctx, svcs...) })
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout(), "%d service(s) stored in etcd; every agent applies them\n", len(svcs))
	return nil
}

func (g *globals) etcdSetBackends(name string, bs []store.Backend) error {
	err := g.withEtcd(func(ctx context.Context, c *etcdstore.Client) error {
		return c.UpdateService(ctx, name, func(s *store.Service) error { s.Backends = bs; return nil })
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout(), "service %s: %d backends stored in etcd\n", name, len(bs))
	return nil
}

func (g *globals) etcdDelService(name string) error {
	var existed bool
	err := g.withEtcd(func(ctx context.Context, c *etcdstore.Client) (err error) {
		existed, err = c.DeleteService(ctx, name)
		return err
	})
	if err != nil {
		return err
	}
	if !existed {
		return fmt.Errorf("no service %q in etcd (see `braid service list --etcd-endpoints …`)", name)
	}
	fmt.Fprintf(stdout(), "service %s removed from etcd\n", name)
	return nil
}

func (g *globals) etcdServices() ([]store.Service, error) {
	var svcs []store.Service
	err := g.withEtcd(func(ctx context.Context, c *etcdstore.Client) (err error) {
		svcs, err = c.Services(ctx)
		return err
	})
	return svcs, err
}

// etcdNodeList is `braid node list` against etcd: every node holding a pod
// CIDR, and whether its agent is registered.
func (g *globals) etcdNodeList() error {
	var nodes []etcdstore.NodeInfo
	err := g.withEtcd(func(ctx context.Context, c *etcdstore.Client) (err error) {
		nodes, err = c.Nodes(ctx)
		return err
	})
	if err != nil {
		return err
	}
	t := table{header: []string{"NAME", "NODE-IP", "POD-CIDR", "STATE"}, json: nodes}
	for _, n := range nodes {
		ip, state := "-", "down"
		if n.Up {
			ip, state = n.NodeIP.String(), "up"
		}
		t.rows = append(t.rows, []string{n.Name, ip, n.PodCIDR.String(), state})
	}
	return g.print(stdout(), t)
}

// etcdNodeDel releases a node's registration and pod CIDR claim.
func (g *globals) etcdNodeDel(name string) error {
	var existed bool
	err := g.withEtcd(func(ctx context.Context, c *etcdstore.Client) (err error) {
		existed, err = c.ReleaseNode(ctx, name)
		return err
	})
	if err != nil {
		return err
	}
	if !existed {
		return fmt.Errorf("no node %q in etcd", name)
	}
	fmt.Fprintf(stdout(), "node %s removed from etcd; its pod CIDR is free\n", name)
	return nil
}
