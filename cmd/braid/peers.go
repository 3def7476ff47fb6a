package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

const syncHint = "run `braid sync` (or wait for the next ADD) to apply it to the datapath"

func nodeAddCmd(g *globals) *cobra.Command {
	var nodeIP, podCIDR string
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "add (or update) another node of the cluster (local datastore: with etcd or Kubernetes nodes join by themselves)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			n, err := parsePeer(args[0], nodeIP, podCIDR)
			if err != nil {
				return err
			}
			return g.withCluster(func(ctx context.Context, c *cluster) error {
				if err := c.PutNode(ctx, n); err != nil {
					return err
				}
				fmt.Fprintf(stdout(), "node %s added: ip %s, pod CIDR %s; %s\n", n.Name, n.NodeIP, n.PodCIDR, c.next)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&nodeIP, "node-ip", "", "the node's IPv4 address on the underlay (required)")
	cmd.Flags().StringVar(&podCIDR, "pod-cidr", "", "the node's pod CIDR (required)")
	_ = cmd.MarkFlagRequired("node-ip")
	_ = cmd.MarkFlagRequired("pod-cidr")
	return cmd
}

func nodeDelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "del NAME",
		Short: "remove another node of the cluster (etcd: its registration and pod CIDR claim, freeing the CIDR)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return g.withCluster(func(ctx context.Context, c *cluster) error {
				existed, err := c.DeleteNode(ctx, args[0])
				if err != nil {
					return err
				}
				if !existed {
					return fmt.Errorf("no node %q in %s (see `braid node list`)", args[0], c.name)
				}
				fmt.Fprintf(stdout(), "node %s removed; %s\n", args[0], c.next)
				return nil
			})
		},
	}
}

func nodeListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "list this node and the other nodes of the cluster",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return g.withCluster(func(ctx context.Context, c *cluster) error {
				nodes, err := c.Nodes(ctx)
				if err != nil {
					return err
				}
				t := table{header: []string{"NAME", "NODE-IP", "POD-CIDR", "SELF", "STATE"}, json: nodes}
				for _, n := range nodes {
					ip, self, state := "-", "", "down"
					if n.NodeIP.IsValid() {
						ip = n.NodeIP.String()
					}
					if n.Self {
						self = "*"
					}
					if n.Up {
						state = "up"
					}
					t.rows = append(t.rows, []string{n.Name, ip, n.PodCIDR.String(), self, state})
				}
				return g.print(stdout(), t)
			})
		},
	}
}
