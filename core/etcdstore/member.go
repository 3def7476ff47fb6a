package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/braid-cni/braid/core/backoff"
	"github.com/braid-cni/braid/core/datastore"
	"github.com/braid-cni/braid/core/store"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Member is one node's membership: registration under a lease, the pod
// CIDR claim, and a watch that turns every change into a new View. It is
// the etcd datastore's Source.
type Member struct {
	Client *Client
	// Node is this node; its PodCIDR, if set, is the CIDR to ask for first
	// (the one the node's pods already use).
	Node        store.Node
	ClusterCIDR netip.Prefix
	NodeBits    int // the size of each node's pod CIDR, 24 for a /24
	LeaseTTL    time.Duration
	Log         *slog.Logger

	live atomic.Pointer[concurrency.Session] // while registered
}

var (
	_ datastore.Source  = (*Member)(nil)
	_ datastore.Resumer = (*Member)(nil)
)

// Resume asks for the pod CIDR the node store holds first, when the store
// is this node's: the node's pods already use it.
func (m *Member) Resume(last store.Node) {
	if last.Name == m.Node.Name && last.PodCIDR.IsValid() {
		m.Node.PodCIDR = last.PodCIDR
	}
}

// Connected reports whether the node is registered and its lease was
// renewed within its TTL (the session ends when it was not).
func (m *Member) Connected() bool {
	s := m.live.Load()
	if s == nil {
		return false
	}
	select {
	case <-s.Done():
		return false
	default:
		return true
	}
}

// Run keeps the node registered and calls apply with a new View after each
// change, until ctx ends. When etcd is unreachable it waits and retries,
// calling nothing: the node keeps the last view it applied. A session that
// ends (lease lost, watch broken) is followed by a new one that registers
// again and re-reads everything, so nothing missed is lost.
func (m *Member) Run(ctx context.Context, apply func(datastore.View)) {
	wait := backoff.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second, Stable: time.Minute}
	for ctx.Err() == nil {
		start := time.Now()
		err := m.session(ctx, apply)
		m.live.Store(nil)
		if ctx.Err() != nil {
			return
		}
		d := wait.Next(time.Since(start))
		m.Log.Warn("etcd session ended; retrying", "err", err, "in", d)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

// callTimeout bounds each etcd call of a session.
const callTimeout = 5 * time.Second

func (m *Member) session(ctx context.Context, apply func(datastore.View)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The lease is granted here, with a deadline: NewSession would wait
	// for etcd as long as its context, which is the session's lifetime.
	cctx, ccancel := context.WithTimeout(ctx, callTimeout)
	lease, err := m.Client.Grant(cctx, int64(m.LeaseTTL.Seconds()))
	ccancel()
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	// The session keeps the lease alive until ctx ends or etcd is away
	// for longer than the TTL. It is never closed (a close revokes): an
	// agent that stops or restarts must not take its node out of every
	// other node's view; its registration lapses with the TTL.
	sess, err := concurrency.NewSession(m.Client.Client, concurrency.WithLease(lease.ID), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("keepalive: %w", err)
	}
	cctx, ccancel = context.WithTimeout(ctx, callTimeout)
	cidr, err := m.Register(cctx, sess.Lease())
	ccancel()
	if err != nil {
		return err
	}
	self := m.Node
	self.PodCIDR = cidr
	m.Node.PodCIDR = cidr // asked for first next time
	m.live.Store(sess)
	m.Log.Info("registered", "node", self.Name, "podCIDR", cidr, "lease", fmt.Sprintf("%x", sess.Lease()))

	cctx, ccancel = context.WithTimeout(ctx, callTimeout)
	st, rev, err := m.load(cctx)
	ccancel()
	if err != nil {
		return err
	}
	apply(st.view(self))
	watch := m.Client.Watch(clientv3.WithRequireLeader(ctx), m.Client.prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sess.Done():
			return errors.New("lease lost (etcd unreachable for longer than the lease TTL)")
		case resp, ok := <-watch:
			if !ok {
				return errors.New("watch closed")
			}
			if err := resp.Err(); err != nil {
				return fmt.Errorf("watch: %w", err)
			}
			changed := false
			for _, ev := range resp.Events {
				changed = st.apply(m.Client, ev) || changed
			}
			if changed {
				apply(st.view(self))
			}
		}
	}
}

// Register claims a pod CIDR for the node (or finds the one it holds) and
// registers the node under lease, in one software transaction (STM): two
// agents can never get the same CIDR, and a node is never seen without
// one. Run does this; it is exported for tools that simulate nodes.
func (m *Member) Register(ctx context.Context, lease clientv3.LeaseID) (netip.Prefix, error) {
	var cidr netip.Prefix
	_, err := concurrency.NewSTM(m.Client.Client, func(s concurrency.STM) (err error) {
		if cidr, err = m.claim(ctx, s); err != nil {
			return err
		}
		reg, err := json.Marshal(store.Peer{Name: m.Node.Name, NodeIP: m.Node.NodeIP, PodCIDR: cidr})
		if err != nil {
			return err
		}
		s.Put(m.Client.key(kindNodes, m.Node.Name), string(reg), clientv3.WithLease(lease))
		return nil
	}, concurrency.WithAbortContext(ctx))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("register: %w", err)
	}
	return cidr, nil
}

// claim is the pod CIDR the node holds, else a free one it claims, in s.
// The STM commits only if no key it read changed: a CIDR another agent
// claimed meanwhile makes it run again.
func (m *Member) claim(ctx context.Context, s concurrency.STM) (netip.Prefix, error) {
	c, name := m.Client, m.Node.Name
	if held := s.Get(c.key(kindClaims, name)); held != "" {
		cidr, err := netip.ParsePrefix(held)
		if err != nil {
			return cidr, fmt.Errorf("%s: %w", c.key(kindClaims, name), err)
		}
		if !m.ClusterCIDR.Contains(cidr.Addr()) || cidr.Bits() != m.NodeBits {
			return cidr, fmt.Errorf("node %s holds pod CIDR %s, which is not a /%d of the cluster CIDR %s: release it with `braid node del %s --etcd-endpoints …`",
				name, cidr, m.NodeBits, m.ClusterCIDR, name)
		}
		switch owner := s.Get(c.key(kindPodCIDRs, held)); owner {
		case name:
		case "": // the claim's other half was deleted by hand: restored
			s.Put(c.key(kindPodCIDRs, held), name)
		default:
			return cidr, fmt.Errorf("node %s holds pod CIDR %s, which %s says is node %s's: release one with `braid node del`",
				name, cidr, c.key(kindPodCIDRs, held), owner)
		}
		return cidr, nil
	}
	// The CIDRs taken, as a hint: an STM reads keys, not prefixes. Each
	// candidate is read in the STM, so one taken since is seen.
	taken, err := c.Get(ctx, c.dir(kindPodCIDRs), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("pod CIDRs: %w", err)
	}
	used := map[string]bool{}
	for _, kv := range taken.Kvs {
		used[strings.TrimPrefix(string(kv.Key), c.dir(kindPodCIDRs))] = true
	}
	for {
		cidr, err := m.pick(used)
		if err != nil {
			return cidr, err
		}
		if s.Get(c.key(kindPodCIDRs, cidr.String())) == "" {
			s.Put(c.key(kindClaims, name), cidr.String())
			s.Put(c.key(kindPodCIDRs, cidr.String()), name)
			return cidr, nil
		}
		used[cidr.String()] = true
	}
}

// pick is the node's preferred CIDR if it is free, else the first free one.
func (m *Member) pick(used map[string]bool) (netip.Prefix, error) {
	if p := m.Node.PodCIDR; p.IsValid() && p.Bits() == m.NodeBits && m.ClusterCIDR.Contains(p.Addr()) && !used[p.String()] && !p.Contains(m.Node.NodeIP) {
		return p, nil
	}
	base := m.ClusterCIDR.Masked().Addr().As4()
	first := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	n := uint64(1) << (m.NodeBits - m.ClusterCIDR.Bits())
	for i := range n {
		a := first + uint32(i<<(32-m.NodeBits))
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), m.NodeBits)
		// A pod CIDR holding the node's own IP would route its network to pods.
		if !used[p.String()] && !p.Contains(m.Node.NodeIP) {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("cluster CIDR %s has no free /%d left (%d nodes hold one)", m.ClusterCIDR, m.NodeBits, len(used))
}

// state is the part of etcd a node follows.
type state struct {
	nodes    map[string]store.Peer
	services map[string]store.Service
	bad      map[string]string // key -> why it could not be read
}

func (m *Member) load(ctx context.Context) (*state, int64, error) {
	c := m.Client
	resp, err := c.Txn(ctx).Then(
		clientv3.OpGet(c.dir(kindNodes), clientv3.WithPrefix()),
		clientv3.OpGet(c.dir(kindServices), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, 0, fmt.Errorf("load: %w", err)
	}
	st := &state{nodes: map[string]store.Peer{}, services: map[string]store.Service{}, bad: map[string]string{}}
	for _, r := range resp.Responses {
		for _, kv := range r.GetResponseRange().Kvs {
			st.put(c, string(kv.Key), kv.Value)
		}
	}
	return st, resp.Header.Revision, nil
}

// apply folds one watch event into the state; it reports whether it
// touched anything the node follows.
func (st *state) apply(c *Client, ev *clientv3.Event) bool {
	key := string(ev.Kv.Key)
	if ev.Type == clientv3.EventTypeDelete {
		name := path.Base(key)
		delete(st.bad, key)
		switch {
		case strings.HasPrefix(key, c.dir(kindNodes)):
			delete(st.nodes, name)
		case strings.HasPrefix(key, c.dir(kindServices)):
			delete(st.services, name)
		default:
			return false
		}
		return true
	}
	return st.put(c, key, ev.Kv.Value)
}

// put records the value under its key's name. A value that names another
// node or service than its key is refused: a delete of the key would not
// find it, and it would stay in the view for ever. A node that is not valid
// is refused here, named by its key (the node store would refuse it too).
func (st *state) put(c *Client, key string, value []byte) bool {
	name := path.Base(key)
	var err error
	switch {
	case strings.HasPrefix(key, c.dir(kindNodes)):
		delete(st.nodes, name)
		var p store.Peer
		if err = decodeNamed(value, &p, &p.Name, name); err == nil {
			err = p.Validate()
		}
		if err == nil {
			st.nodes[name] = p
		}
	case strings.HasPrefix(key, c.dir(kindServices)):
		delete(st.services, name)
		var s store.Service
		if err = decodeNamed(value, &s, &s.Name, name); err == nil {
			st.services[name] = s
		}
	default:
		return false
	}
	if err != nil {
		st.bad[key] = err.Error()
	} else {
		delete(st.bad, key)
	}
	return true
}

// decodeNamed decodes value into v, whose name field (*got) must be want.
func decodeNamed(value []byte, v any, got *string, want string) error {
	if err := json.Unmarshal(value, v); err != nil {
		return err
	}
	if *got != want {
		return fmt.Errorf("the value names %q, not %q as its key does", *got, want)
	}
	return nil
}

// view copies the state out for the node self.
func (st *state) view(self store.Node) datastore.View {
	v := datastore.View{Self: self, Peers: []store.Peer{}, Services: make([]store.Service, 0, len(st.services))}
	for name, p := range st.nodes {
		if name != self.Name {
			v.Peers = append(v.Peers, p)
		}
	}
	for _, s := range st.services {
		v.Services = append(v.Services, s)
	}
	for key, why := range st.bad {
		v.Problems = append(v.Problems, key+": "+why)
	}
	return v
}
