package store

import (
	"errors"
	"fmt"
	"net/netip"
)

// Node is this node's identity, written by `braid node init` (or the agent).
type Node struct {
	Name    string       `json:"name"`
	NodeIP  netip.Addr   `json:"nodeIP"`
	PodCIDR netip.Prefix `json:"podCIDR"`
	Device  string       `json:"device"`
}

// ErrNotInitialized means `braid node init` has not run on this node.
var ErrNotInitialized = errors.New("node is not initialized: run `braid node init --name --node-ip --pod-cidr --device`")

// Node returns the node's identity or ErrNotInitialized.
func (t *Tx) Node() (Node, error) {
	var n Node
	if err := t.getJSON(bucketNode, keyNode, &n); err != nil {
		if errors.Is(err, ErrNotFound) {
			return n, ErrNotInitialized
		}
		return n, err
	}
	return n, nil
}

// SetNode records the node's identity.
func (t *Tx) SetNode(n Node) error { return t.putJSON(bucketNode, keyNode, n) }

// SetIdentity records n (valid, see Node.Validate) as the node's identity,
// refusing to move the pod CIDR from under existing endpoints. Unchanged is
// a no-op.
func (t *Tx) SetIdentity(n Node) error {
	if err := n.Validate(); err != nil {
		return err
	}
	old, err := t.Node()
	if err == nil && old == n {
		return nil
	}
	if err == nil && old.PodCIDR != n.PodCIDR {
		eps, err := t.Endpoints()
		if err != nil {
			return err
		}
		if len(eps) > 0 {
			return fmt.Errorf("node has %d endpoints in pod CIDR %s: delete them before moving it to %s", len(eps), old.PodCIDR, n.PodCIDR)
		}
	}
	return t.SetNode(n)
}

// PeerClash is why n cannot be this node's identity among the known other
// nodes (its pod CIDR overlaps one's, or its node IP is one's), or nil.
func (t *Tx) PeerClash(n Node) error {
	peers, err := t.Peers()
	if err != nil {
		return err
	}
	self := thisNode(n)
	for _, p := range peers {
		if p.Name != n.Name {
			if err := conflict(self, p); err != nil {
				return err
			}
		}
	}
	return nil
}
