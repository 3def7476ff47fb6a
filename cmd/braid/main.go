// Command braid is the node agent and operator CLI: it initializes a node,
// shows what the node is doing (from the store and the pinned maps) and, as
// `braid agent`, hosts the datapath plugins.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "braid:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "braid",
		Short:         "braid: a composable eBPF datapath built from CNI plugins",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.bind(root)
	node, service := nodeCmd(g), serviceCmd(g)
	g.ds.bind(node.PersistentFlags(), "")
	g.ds.bind(service.PersistentFlags(), "")
	root.AddCommand(node, endpointCmd(g), bpfCmd(g), statusCmd(g), syncCmd(g), service, agentCmd(g))
	return root
}
