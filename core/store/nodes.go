package store

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Peer is another node of the cluster, as this node knows it: where its pods
// live and how to reach it. Written by `braid node add` or the agent.
type Peer struct {
	Name    string       `json:"name"`
	NodeIP  netip.Addr   `json:"nodeIP"`
	PodCIDR netip.Prefix `json:"podCIDR"`
}

var bucketPeers = []byte("peers")

func init() { allBuckets = append(allBuckets, bucketPeers) }

// Peers lists the other nodes, ordered by name.
func (t *Tx) Peers() ([]Peer, error) {
	var out []Peer
	err := forEachJSON(t, bucketPeers, func(p Peer) error {
		out = append(out, p)
		return nil
	})
	return out, err
}

// PutPeer adds or updates p (valid, see Peer.Validate), refusing a pod CIDR
// that overlaps this node's or another node's or holds a node's IP, and a
// node IP another node (or this one) already has.
func (t *Tx) PutPeer(p Peer) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if self, err := t.Node(); err == nil {
		if err := conflict(p, thisNode(self)); err != nil {
			return err
		}
	}
	peers, err := t.Peers()
	if err != nil {
		return err
	}
	for _, o := range peers {
		if o.Name == p.Name {
			continue
		}
		if err := conflict(p, o); err != nil {
			return err
		}
	}
	return t.putJSON(bucketPeers, []byte(p.Name), p)
}

// thisNode is the node's identity as a peer it is checked against.
func thisNode(n Node) Peer {
	p := n.Peer()
	p.Name += " (this node)"
	return p
}

// conflict is why nodes p and o cannot be in one cluster: overlapping pod
// CIDRs, one node IP, or a pod CIDR holding the other's IP (its network
// would be routed to pods), or nil.
func conflict(p, o Peer) error {
	if p.PodCIDR.Overlaps(o.PodCIDR) {
		return fmt.Errorf("pod CIDR %s of node %s overlaps %s of node %s", p.PodCIDR, p.Name, o.PodCIDR, o.Name)
	}
	if p.NodeIP == o.NodeIP {
		return fmt.Errorf("node IP %s of node %s is already node %s's", p.NodeIP, p.Name, o.Name)
	}
	if p.PodCIDR.Contains(o.NodeIP) {
		return fmt.Errorf("pod CIDR %s of node %s holds node %s's IP %s", p.PodCIDR, p.Name, o.Name, o.NodeIP)
	}
	if o.PodCIDR.Contains(p.NodeIP) {
		return fmt.Errorf("node IP %s of node %s is in node %s's pod CIDR %s", p.NodeIP, p.Name, o.Name, o.PodCIDR)
	}
	return nil
}

// DeletePeer removes the node called name; it reports whether it existed.
func (t *Tx) DeletePeer(name string) (bool, error) {
	b := t.tx.Bucket(bucketPeers)
	if b.Get([]byte(name)) == nil {
		return false, nil
	}
	return true, b.Delete([]byte(name))
}

// SortPeers orders peers by name (bbolt already does; kept for merged lists).
func SortPeers(ps []Peer) {
	slices.SortFunc(ps, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
}
