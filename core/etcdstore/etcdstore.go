// Package etcdstore is braid's cluster state in etcd: the nodes (each
// registered under its agent's lease), the pod CIDR each node claimed, and
// the services. Layout under the prefix (default /braid):
//
//	nodes/<name>      {"name","nodeIP","podCIDR"}  bound to the node's lease
//	claims/<name>     <pod CIDR>                   persistent
//	podcidrs/<cidr>   <name>                       persistent
//	services/<name>   a store.Service as JSON (without its node-local id)
//
// A claim outlives the lease on purpose: a node whose agent restarts, or
// comes back after etcd was away, keeps the pod CIDR its pods still use.
// `braid node del --etcd-endpoints` releases it.
package etcdstore

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/braid-cni/braid/core/datastore"
	"github.com/braid-cni/braid/core/store"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DefaultPrefix is where braid keeps its keys.
const DefaultPrefix = "/braid"

// Config says how to reach etcd.
type Config struct {
	Endpoints []string
	// TLS: a client certificate and key, and the CA that signed the
	// server's; all empty for plain HTTP.
	CertFile, KeyFile, CAFile string
	Prefix                    string
}

// Client is a connection to etcd with braid's key layout; it is the etcd
// datastore's Cluster.
type Client struct {
	*clientv3.Client
	prefix string
}

// Connect returns a client without waiting for etcd: the agent must start,
// and keep its datapath, while etcd is away. Calls fail (or wait, with a
// context) until it is reachable.
func Connect(c Config) (*Client, error) {
	if len(c.Endpoints) == 0 {
		return nil, errors.New("no etcd endpoints")
	}
	var tlsConf *tls.Config
	if c.CertFile != "" || c.KeyFile != "" || c.CAFile != "" {
		info := transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: c.CAFile}
		var err error
		if tlsConf, err = info.ClientConfig(); err != nil {
			return nil, fmt.Errorf("etcd TLS: %w", err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: c.Endpoints,
		TLS:       tlsConf,
		// Pings find a dead connection in seconds, so a restarted etcd
		// is reconnected to quickly.
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(c.Endpoints, ","), err)
	}
	prefix := c.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Client{Client: cli, prefix: strings.TrimSuffix(prefix, "/")}, nil
}

func (c *Client) key(parts ...string) string {
	return c.prefix + "/" + strings.Join(parts, "/")
}

func (c *Client) dir(kind string) string { return c.key(kind) + "/" }

// Key kinds.
const (
	kindNodes    = "nodes"
	kindClaims   = "claims"
	kindPodCIDRs = "podcidrs"
	kindServices = "services"
)

// MaxTxnOps is etcd's default limit of operations in one transaction.
const MaxTxnOps = 128

// Services lists the services, ordered by name.
func (c *Client) Services(ctx context.Context) ([]store.Service, error) {
	resp, err := c.Get(ctx, c.dir(kindServices), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := []store.Service{}
	for _, kv := range resp.Kvs {
		var s store.Service
		if err := json.Unmarshal(kv.Value, &s); err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// PutServices adds or replaces svcs, all or none, refusing one whose
// address or node port another service has, or more than a node's maps
// hold. The check and the write are
// one transaction: it fails, and is retried, if any service changed since
// the check read them.
func (c *Client) PutServices(ctx context.Context, svcs ...store.Service) error {
	return c.editServices(ctx, func(all map[string]store.Service) error {
		for _, s := range svcs {
			if err := s.Validate(); err != nil {
				return err
			}
			s.ID = 0 // ids are the node store's
			all[s.Name] = s
		}
		return nil
	})
}

// UpdateService changes the service called name with fn.
func (c *Client) UpdateService(ctx context.Context, name string, fn func(*store.Service) error) error {
	return c.editServices(ctx, func(all map[string]store.Service) error {
		s, ok := all[name]
		if !ok {
			return datastore.NoService(name)
		}
		if err := fn(&s); err != nil {
			return err
		}
		if err := s.Validate(); err != nil {
			return err
		}
		all[name] = s
		return nil
	})
}

// editServices reads every service, lets edit change the set, checks it is
// consistent and writes what changed, if nothing changed in between.
//
// Not a concurrency.STM: an STM reads and guards single keys, and the
// check here is over the whole set (no two services on one address or
// node port, the maps' capacity), so a service added under another name
// meanwhile must fail the write. The guard is the prefix's highest
// ModRevision, which an STM cannot express.
func (c *Client) editServices(ctx context.Context, edit func(map[string]store.Service) error) error {
	for range 10 {
		resp, err := c.Get(ctx, c.dir(kindServices), clientv3.WithPrefix())
		if err != nil {
			return err
		}
		before := map[string][]byte{}
		all := map[string]store.Service{}
		for _, kv := range resp.Kvs {
			var s store.Service
			if err := json.Unmarshal(kv.Value, &s); err != nil {
				return fmt.Errorf("%s: %w", kv.Key, err)
			}
			before[s.Name], all[s.Name] = kv.Value, s
		}
		if err := edit(all); err != nil {
			return err
		}
		var ops []clientv3.Op
		changed := map[string]bool{}
		for name, s := range all {
			raw, err := json.Marshal(s)
			if err != nil {
				return err
			}
			if string(raw) != string(before[name]) {
				ops = append(ops, clientv3.OpPut(c.key(kindServices, name), string(raw)))
				changed[name] = true
			}
		}
		if err := consistent(all, changed); err != nil {
			return err
		}
		// Every node holds every service: more than a node's maps hold
		// would fail there, not here.
		if err := store.CheckCapacity(slices.Collect(maps.Values(all))); err != nil {
			return err
		}
		if len(ops) > MaxTxnOps {
			return fmt.Errorf("%d services in one change: etcd takes at most %d operations per transaction (--max-txn-ops): apply them in batches", len(ops), MaxTxnOps)
		}
		// Nothing under services/ may have changed since the read.
		unchanged := clientv3.Compare(clientv3.ModRevision(c.dir(kindServices)).WithPrefix(), "<", resp.Header.Revision+1)
		txn, err := c.Txn(ctx).If(unchanged).Then(ops...).Commit()
		if err != nil {
			return err
		}
		if txn.Succeeded {
			return nil
		}
	}
	return errors.New("services keep changing under this update; try again")
}

// consistent refuses two services on one address or node port. The
// services being changed are checked last, so the error names one of them.
func consistent(all map[string]store.Service, changed map[string]bool) error {
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		if changed[a] != changed[b] {
			if changed[a] {
				return 1
			}
			return -1
		}
		return strings.Compare(a, b)
	})
	addrs, ports := map[string]string{}, map[string]string{}
	for _, n := range names {
		s := all[n]
		a := fmt.Sprintf("%s:%d/%s", s.VIP, s.Port, s.Protocol)
		if o, ok := addrs[a]; ok {
			return fmt.Errorf("service %s: %s is already service %s's", n, a, o)
		}
		addrs[a] = n
		if s.NodePort != 0 {
			p := fmt.Sprintf("%d/%s", s.NodePort, s.Protocol)
			if o, ok := ports[p]; ok {
				return fmt.Errorf("service %s: node port %s is already service %s's", n, p, o)
			}
			ports[p] = n
		}
	}
	return nil
}

// DeleteService removes the service called name; it reports whether it existed.
func (c *Client) DeleteService(ctx context.Context, name string) (bool, error) {
	resp, err := c.Delete(ctx, c.key(kindServices, name))
	if err != nil {
		return false, err
	}
	return resp.Deleted > 0, nil
}

var _ datastore.Cluster = (*Client)(nil)

// Nodes lists every node with a claim or a registration, ordered by name:
// Up while its agent is registered (its lease alive). A node that is down
// shows no node IP: only the registration holds it.
func (c *Client) Nodes(ctx context.Context) ([]datastore.NodeInfo, error) {
	resp, err := c.Txn(ctx).Then(
		clientv3.OpGet(c.dir(kindNodes), clientv3.WithPrefix()),
		clientv3.OpGet(c.dir(kindClaims), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, err
	}
	byName := map[string]*datastore.NodeInfo{}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		var p store.Peer
		if err := json.Unmarshal(kv.Value, &p); err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		byName[p.Name] = &datastore.NodeInfo{Name: p.Name, NodeIP: p.NodeIP, PodCIDR: p.PodCIDR, Up: true}
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		name := path.Base(string(kv.Key))
		if _, ok := byName[name]; !ok {
			cidr, _ := netip.ParsePrefix(string(kv.Value))
			byName[name] = &datastore.NodeInfo{Name: name, PodCIDR: cidr}
		}
	}
	out := []datastore.NodeInfo{}
	for _, n := range byName {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b datastore.NodeInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// PutNode is refused: a node joins by registering itself (its agent).
func (c *Client) PutNode(context.Context, store.Peer) error {
	return datastore.ReadOnly("nodes join a cluster in etcd by running `braid agent --datastore etcd`")
}

// DeleteNode drops a node's registration and its pod CIDR claim, so the
// CIDR can go to another node; it reports whether there was anything.
func (c *Client) DeleteNode(ctx context.Context, name string) (bool, error) {
	claim, err := c.Get(ctx, c.key(kindClaims, name))
	if err != nil {
		return false, err
	}
	ops := []clientv3.Op{
		clientv3.OpDelete(c.key(kindNodes, name)),
		clientv3.OpDelete(c.key(kindClaims, name)),
	}
	if len(claim.Kvs) > 0 {
		ops = append(ops, clientv3.OpDelete(c.key(kindPodCIDRs, string(claim.Kvs[0].Value))))
	}
	resp, err := c.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return false, err
	}
	n := int64(0)
	for _, r := range resp.Responses {
		n += r.GetResponseDeleteRange().Deleted
	}
	return n > 0, nil
}
