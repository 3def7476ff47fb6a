// Package datastore is the one interface between braid and wherever a
// cluster's state lives: the node store alone (local), etcd, or the
// Kubernetes API server. The agent follows a Source; every CLI command that
// reads or edits cluster state goes through a Cluster. Neither knows which
// datastore is behind it.
package datastore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/braid-cni/braid/core/store"
)

// View is the cluster as one node sees it: itself with the pod CIDR it
// holds, the other nodes, and the services this node enforces (already
// narrowed to this node where a policy says so, e.g. Kubernetes'
// internalTrafficPolicy: Local).
type View struct {
	Self     store.Node
	Peers    []store.Peer
	Services []store.Service
	// Problems are entries the datastore holds that braid cannot use
	// (unreadable, invalid, unsupported), each naming the entry and why.
	Problems []string
}

// Source is what the agent follows.
type Source interface {
	// Run follows the cluster until ctx ends, calling apply with a new
	// View after each change. While the datastore is unreachable it calls
	// nothing: the node keeps the last view it applied.
	Run(ctx context.Context, apply func(View))
	// Connected reports whether the source is in touch with the cluster.
	Connected() bool
}

// Resumer is a Source that continues from the identity the node store
// already holds (left by the last run; zero when there is none). The agent
// calls Resume once, before Run. etcd asks for that pod CIDR first so the
// node's pods keep their addresses; a Source that learns the node's CIDR
// from elsewhere (Kubernetes' spec.podCIDR) need not implement it.
type Resumer interface {
	Resume(last store.Node)
}

// NodeInfo is one node as `braid node list` shows it.
type NodeInfo struct {
	Name    string       `json:"name"`
	NodeIP  netip.Addr   `json:"nodeIP"`
	PodCIDR netip.Prefix `json:"podCIDR"`
	Self    bool         `json:"self,omitempty"`
	// Up: the node's agent is registered (etcd) or the node is Ready
	// (Kubernetes); always true for the local datastore's peers.
	Up bool `json:"up"`
}

// Cluster is what the CLI reads and edits.
type Cluster interface {
	Nodes(ctx context.Context) ([]NodeInfo, error)
	// PutNode adds or updates another node (ErrReadOnly where nodes
	// register themselves).
	PutNode(ctx context.Context, p store.Peer) error
	DeleteNode(ctx context.Context, name string) (existed bool, err error)
	Services(ctx context.Context) ([]store.Service, error)
	// PutServices adds or replaces svcs, all or none.
	PutServices(ctx context.Context, svcs ...store.Service) error
	UpdateService(ctx context.Context, name string, fn func(*store.Service) error) error
	DeleteService(ctx context.Context, name string) (existed bool, err error)
	Close() error
}

// ErrReadOnly is returned by a Cluster for changes its datastore does not
// take from braid (Kubernetes: Services are changed with kubectl).
var ErrReadOnly = errors.New("read-only datastore")

// ReadOnly is an error that says why a change is refused (what to do
// instead), and is ErrReadOnly to errors.Is.
func ReadOnly(format string, args ...any) error {
	return readOnlyError(fmt.Sprintf(format, args...))
}

type readOnlyError string

func (e readOnlyError) Error() string        { return string(e) }
func (e readOnlyError) Is(target error) bool { return target == ErrReadOnly }
