package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/braid-cni/braid/core/bpffs"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/store"
	"github.com/spf13/cobra"
)

func nodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "this node's identity and the cluster's nodes"}
	cmd.AddCommand(nodeInitCmd(g), nodeAddCmd(g), nodeDelCmd(g), nodeListCmd(g), nodeRebuildCmd(g))
	return cmd
}

func nodeInitCmd(g *globals) *cobra.Command {
	var name, nodeIP, podCIDR, device string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "record this node's identity and prepare bpffs and the shared maps",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			n, err := parseNode(name, nodeIP, podCIDR, device)
			if err != nil {
				return err
			}
			if err := bpffs.Ensure(g.bpfRoot); err != nil {
				return err
			}
			eps, err := maps.OpenEndpoints(g.bpfRoot)
			if err != nil {
				return err
			}
			eps.Close()
			st, err := g.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			err = st.Update(func(tx *store.Tx) error {
				if err := tx.PeerClash(n); err != nil {
					return err
				}
				return tx.SetIdentity(n)
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout(), "node %s initialized: ip %s, pod CIDR %s, device %s\n", n.Name, n.NodeIP, n.PodCIDR, n.Device)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "node name (required)")
	f.StringVar(&nodeIP, "node-ip", "", "node IPv4 address on the underlay (required)")
	f.StringVar(&podCIDR, "pod-cidr", "", "IPv4 CIDR this node's pods are addressed from (required)")
	f.StringVar(&device, "device", "", "node device facing the underlay (required)")
	for _, req := range []string{"name", "node-ip", "pod-cidr", "device"} {
		_ = cmd.MarkFlagRequired(req)
	}
	return cmd
}

// parseNode is a node's identity from its flags.
func parseNode(name, nodeIP, podCIDR, device string) (store.Node, error) {
	p, err := parsePeer(name, nodeIP, podCIDR)
	if err != nil {
		return store.Node{}, err
	}
	if !validDevice(device) {
		return store.Node{}, fmt.Errorf("--device %q is not an interface name (1-15 characters, no '/', ':' or space)", device)
	}
	return store.Node{Name: p.Name, NodeIP: p.NodeIP, PodCIDR: p.PodCIDR, Device: device}, nil
}

// parsePeer is a node's name, address and pod CIDR from their flags.
func parsePeer(name, nodeIP, podCIDR string) (store.Peer, error) {
	if !validNodeName(name) {
		return store.Peer{}, fmt.Errorf("--name %q is not a node name (1-253 letters, digits, '-', '.' or '_')", name)
	}
	ip, err := netip.ParseAddr(nodeIP)
	if err != nil || !ip.Is4() {
		return store.Peer{}, fmt.Errorf("--node-ip %q is not an IPv4 address", nodeIP)
	}
	cidr, err := netip.ParsePrefix(podCIDR)
	if err != nil || !cidr.Addr().Is4() {
		return store.Peer{}, fmt.Errorf("--pod-cidr %q is not an IPv4 CIDR", podCIDR)
	}
	if cidr != cidr.Masked() {
		return store.Peer{}, fmt.Errorf("--pod-cidr %s has host bits set; did you mean %s?", cidr, cidr.Masked())
	}
	if cidr.Bits() > 30 {
		return store.Peer{}, fmt.Errorf("--pod-cidr %s is too small: use /30 or larger", cidr)
	}
	return store.Peer{Name: name, NodeIP: ip, PodCIDR: cidr}, nil
}

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
