package main

import (
	"errors"
	"fmt"
	"net/netip"

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
	p, err := parseFlags(name, nodeIP, podCIDR)
	if err != nil {
		return store.Node{}, err
	}
	n := store.Node{Name: p.Name, NodeIP: p.NodeIP, PodCIDR: p.PodCIDR, Device: device}
	return n, flagError(n.Validate())
}

// parsePeer is a node's name, address and pod CIDR from their flags.
func parsePeer(name, nodeIP, podCIDR string) (store.Peer, error) {
	p, err := parseFlags(name, nodeIP, podCIDR)
	if err != nil {
		return p, err
	}
	return p, flagError(p.Validate())
}

// parseFlags parses the flags' syntax; store's Validate says the rest.
func parseFlags(name, nodeIP, podCIDR string) (store.Peer, error) {
	ip, err := netip.ParseAddr(nodeIP)
	if err != nil {
		return store.Peer{}, fmt.Errorf("--node-ip %q is not an IPv4 address", nodeIP)
	}
	cidr, err := netip.ParsePrefix(podCIDR)
	if err != nil {
		return store.Peer{}, fmt.Errorf("--pod-cidr %q is not an IPv4 CIDR", podCIDR)
	}
	return store.Peer{Name: name, NodeIP: ip, PodCIDR: cidr}, nil
}

// flagOf is the flag that sets each field Validate names.
var flagOf = map[string]string{
	store.FieldName: "--name", store.FieldNodeIP: "--node-ip", store.FieldPodCIDR: "--pod-cidr", store.FieldDevice: "--device",
}

// flagError names the flag an invalid field came from.
func flagError(err error) error {
	var inv *store.InvalidNodeError
	if errors.As(err, &inv) && flagOf[inv.Field] != "" {
		return fmt.Errorf("%s %s", flagOf[inv.Field], inv.Reason)
	}
	return err
}
