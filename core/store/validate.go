package store

import (
	"fmt"
	"strings"
)

// The one validation of a node and of a peer, used wherever one enters
// braid: the CLI's flags, etcd's values, the agent's views, and the store
// itself (SetIdentity, PutPeer, SyncPeers).

// Fields of a node an InvalidNodeError names.
const (
	FieldName    = "name"
	FieldNodeIP  = "node IP"
	FieldPodCIDR = "pod CIDR"
	FieldDevice  = "device"
)

// InvalidNodeError is why a node or peer is refused: the field, and what
// is wrong with its value. The CLI names its flag instead of the field.
type InvalidNodeError struct {
	Node   string // the node's name as given
	Field  string // one of the Field constants
	Reason string // the value and what is wrong with it
}

func (e *InvalidNodeError) Error() string {
	return fmt.Sprintf("node %q: %s %s", e.Node, e.Field, e.Reason)
}

// MaxPodCIDRBits is the smallest pod CIDR: a /30 holds the gateway and one pod.
const MaxPodCIDRBits = 30

// Validate checks what a peer must satisfy on its own: a name that can be a
// key (in the store, in etcd, and Kubernetes' node names), an IPv4 node IP,
// an IPv4 pod CIDR without host bits and not holding the node's own IP
// (routing it to pods would cut the node off its network).
func (p Peer) Validate() error {
	if err := p.validateAddress(); err != nil {
		return err
	}
	return p.validatePodCIDR()
}

// Validate checks a node's identity: what a peer must satisfy, and a
// device name the kernel takes.
func (n Node) Validate() error {
	if err := n.ValidateUnassigned(); err != nil {
		return err
	}
	return n.Peer().validatePodCIDR()
}

// ValidateUnassigned is Validate for a node whose pod CIDR the datastore
// is yet to give (etcd's claim): all but the pod CIDR.
func (n Node) ValidateUnassigned() error {
	if err := n.Peer().validateAddress(); err != nil {
		return err
	}
	if !validDevice(n.Device) {
		return n.invalid(FieldDevice, "%q is not an interface name (1-15 characters, no '/', ':' or space)", n.Device)
	}
	return nil
}

func (n Node) invalid(field, format string, args ...any) error {
	return n.Peer().invalid(field, format, args...)
}

func (p Peer) invalid(field, format string, args ...any) error {
	return &InvalidNodeError{Node: p.Name, Field: field, Reason: fmt.Sprintf(format, args...)}
}

func (p Peer) validateAddress() error {
	if !validNodeName(p.Name) {
		return p.invalid(FieldName, "%q is not a node name (1-253 letters, digits, '-', '.' or '_')", p.Name)
	}
	if !p.NodeIP.Is4() || p.NodeIP.IsUnspecified() {
		return p.invalid(FieldNodeIP, "%s is not an IPv4 address", p.NodeIP)
	}
	return nil
}

func (p Peer) validatePodCIDR() error {
	c := p.PodCIDR
	switch {
	case !c.IsValid() || !c.Addr().Is4():
		return p.invalid(FieldPodCIDR, "%s is not an IPv4 CIDR", c)
	case c != c.Masked():
		return p.invalid(FieldPodCIDR, "%s has host bits set; did you mean %s?", c, c.Masked())
	case c.Bits() > MaxPodCIDRBits:
		return p.invalid(FieldPodCIDR, "%s is too small: use /%d or larger", c, MaxPodCIDRBits)
	case c.Contains(p.NodeIP):
		return p.invalid(FieldPodCIDR, "%s holds the node's own IP %s: the node's network is not a pod CIDR", c, p.NodeIP)
	}
	return nil
}

// Peer is the node as the other nodes see it.
func (n Node) Peer() Peer { return Peer{Name: n.Name, NodeIP: n.NodeIP, PodCIDR: n.PodCIDR} }

// validNodeName: a node name is a key in the store and in etcd, and the
// name Kubernetes gives a node: no '/' and no spaces.
func validNodeName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}

// validDevice is the kernel's rule for interface names (dev_valid_name).
func validDevice(name string) bool {
	return name != "" && len(name) < 16 && name != "." && name != ".." && !strings.ContainsAny(name, "/: \t\n")
}
