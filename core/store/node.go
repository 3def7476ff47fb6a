package store

import (
	"errors"
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
