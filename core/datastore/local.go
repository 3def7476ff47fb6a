package datastore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/braid-cni/braid/core/store"
)

// Local is the local datastore as a Cluster: one node's store, which the
// CLI edits and that node's agent follows (`braid sync` or the agent apply
// it). Each call opens the store and closes it at once: it holds the
// node-wide lock while open, and CNI calls wait for it.
type Local struct {
	StateDir string
	// LockWait is how long a call waits for the store's lock.
	LockWait time.Duration
}

// NewLocal is the node store under stateDir; a person is waiting, so the
// lock wait is short.
func NewLocal(stateDir string) *Local { return &Local{StateDir: stateDir, LockWait: 5 * time.Second} }

func (l *Local) update(fn func(*store.Tx) error) error {
	st, err := store.Open(l.StateDir, l.LockWait)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Update(fn)
}

func (l *Local) view(fn func(*store.Tx) error) error {
	st, err := store.Open(l.StateDir, l.LockWait)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.View(fn)
}

// Nodes is this node (when initialized) and the peers it knows.
func (l *Local) Nodes(context.Context) ([]NodeInfo, error) {
	out := []NodeInfo{}
	err := l.view(func(tx *store.Tx) error {
		if self, err := tx.Node(); err == nil {
			out = append(out, NodeInfo{Name: self.Name, NodeIP: self.NodeIP, PodCIDR: self.PodCIDR, Self: true, Up: true})
		}
		peers, err := tx.Peers()
		for _, p := range peers {
			out = append(out, NodeInfo{Name: p.Name, NodeIP: p.NodeIP, PodCIDR: p.PodCIDR, Up: true})
		}
		return err
	})
	return out, err
}

// PutNode adds or updates a peer (validated and checked against this node
// and the other peers by the store).
func (l *Local) PutNode(_ context.Context, p store.Peer) error {
	return l.update(func(tx *store.Tx) error { return tx.PutPeer(p) })
}

func (l *Local) DeleteNode(_ context.Context, name string) (existed bool, err error) {
	err = l.update(func(tx *store.Tx) (err error) {
		existed, err = tx.DeletePeer(name)
		return err
	})
	return existed, err
}

func (l *Local) Services(context.Context) (svcs []store.Service, err error) {
	err = l.view(func(tx *store.Tx) (err error) { svcs, err = tx.Services(); return err })
	if svcs == nil {
		svcs = []store.Service{}
	}
	return svcs, err
}

// PutServices stores all of svcs in one transaction (the store checks them
// and the maps' capacity): all or none.
func (l *Local) PutServices(_ context.Context, svcs ...store.Service) error {
	return l.update(func(tx *store.Tx) error {
		_, err := tx.PutServices(svcs)
		return err
	})
}

func (l *Local) UpdateService(_ context.Context, name string, fn func(*store.Service) error) error {
	return l.update(func(tx *store.Tx) error {
		s, err := tx.Service(name)
		if errors.Is(err, store.ErrNotFound) {
			return NoService(name)
		}
		if err != nil {
			return err
		}
		if err := fn(&s); err != nil {
			return err
		}
		_, err = tx.PutService(s)
		return err
	})
}

func (l *Local) DeleteService(_ context.Context, name string) (existed bool, err error) {
	err = l.update(func(tx *store.Tx) (err error) {
		existed, err = tx.DeleteService(name)
		return err
	})
	return existed, err
}

func (l *Local) Close() error { return nil }

// NoService is the error for a service name a Cluster does not hold.
func NoService(name string) error {
	return fmt.Errorf("no service %q (see `braid service list`)", name)
}
