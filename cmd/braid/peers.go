package main

import (
	"fmt"

	"github.com/braid-cni/braid/core/store"
	"github.com/spf13/cobra"
)

const syncHint = "run `braid sync` (or wait for the next ADD) to apply it to the datapath"

func nodeAddCmd(g *globals) *cobra.Command {
	var nodeIP, podCIDR string
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "add (or update) another node of the cluster",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if g.etcd.enabled() {
				return fmt.Errorf("nodes join a cluster in etcd by running `braid agent --datastore etcd`")
			}
			n, err := parsePeer(args[0], nodeIP, podCIDR)
			if err != nil {
				return err
			}
			err = g.update(func(tx *store.Tx) error { return tx.PutPeer(n) })
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout(), "node %s added: ip %s, pod CIDR %s; %s\n", n.Name, n.NodeIP, n.PodCIDR, syncHint)
			return nil
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
		Short: "remove another node of the cluster",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if g.etcd.enabled() {
				return g.etcdNodeDel(args[0])
			}
			var existed bool
			err := g.update(func(tx *store.Tx) (err error) {
				existed, err = tx.DeletePeer(args[0])
				return err
			})
			if err != nil {
				return err
			}
			if !existed {
				return fmt.Errorf("no node %q (see `braid node list`)", args[0])
			}
			fmt.Fprintf(stdout(), "node %s removed; %s\n", args[0], syncHint)
			return nil
		},
	}
}

// nodeRow is one line of `braid node list`.
type nodeRow struct {
	Name    string `json:"name"`
	NodeIP  string `json:"nodeIP"`
	PodCIDR string `json:"podCIDR"`
	Self    bool   `json:"self"`
}

func nodeListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "list this node and the other nodes it knows",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if g.etcd.enabled() {
				return g.etcdNodeList()
			}
			rows := []nodeRow{}
			err := g.view(func(tx *store.Tx) error {
				if self, err := tx.Node(); err == nil {
					rows = append(rows, nodeRow{self.Name, self.NodeIP.String(), self.PodCIDR.String(), true})
				}
				peers, err := tx.Peers()
				for _, p := range peers {
					rows = append(rows, nodeRow{p.Name, p.NodeIP.String(), p.PodCIDR.String(), false})
				}
				return err
			})
			if err != nil {
				return err
			}
			t := table{header: []string{"NAME", "NODE-IP", "POD-CIDR", "SELF"}, json: rows}
			for _, r := range rows {
				self := ""
				if r.Self {
					self = "*"
				}
				t.rows = append(t.rows, []string{r.Name, r.NodeIP, r.PodCIDR, self})
			}
			return g.print(stdout(), t)
		},
	}
}
