package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/store"
	"github.com/spf13/cobra"
)

// nodeRebuildCmd recovers from a lost or corrupt store: the file is moved
// aside and a new one written with the node's identity (flags, as for
// init); then each plugin of the conflist runs its rebuild verb, which
// restores what it can read back from kernel state (veth-ebpf: its
// endpoints, from host veth aliases and the endpoint map). Peers and
// services are not in kernel state: the agent re-syncs them, or add them
// again.
func nodeRebuildCmd(g *globals) *cobra.Command {
	var name, nodeIP, podCIDR, device, conflist, cniPath string
	cmd := &cobra.Command{
		Use:   "rebuild",
		Short: "rebuild a corrupt or lost node store from kernel state (endpoints, allocations)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			n, err := parseNode(name, nodeIP, podCIDR, device)
			if err != nil {
				return err
			}
			if moved, err := moveAside(g.stateDir); err != nil {
				return err
			} else if moved != "" {
				fmt.Fprintf(stdout(), "old store moved to %s\n", moved)
			}
			if err := g.update(func(tx *store.Tx) error { return tx.SetNode(n) }); err != nil {
				return err
			}
			reports, err := runConflist(conflist, filepath.SplitList(cniPath), plugin.RebuildVerb)
			if err != nil {
				return err
			}
			restored := 0
			for _, r := range reports {
				if len(r.Problems) > 0 {
					return fmt.Errorf("plugin %s could not rebuild: %v", r.Plugin, r.Problems)
				}
				restored += len(r.Changes)
			}
			fmt.Fprintf(stdout(), "node %s: store rebuilt with %d endpoints from kernel state; run `braid sync` (and re-add peers and services unless the agent does)\n", n.Name, restored)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "node name (required)")
	f.StringVar(&nodeIP, "node-ip", "", "node IPv4 address (required)")
	f.StringVar(&podCIDR, "pod-cidr", "", "the node's pod CIDR (required)")
	f.StringVar(&device, "device", "", "node device (required)")
	for _, req := range []string{"name", "node-ip", "pod-cidr", "device"} {
		_ = cmd.MarkFlagRequired(req)
	}
	conflistFlags(f, &conflist, &cniPath)
	return cmd
}

// moveAside renames the store file out of the way; absent is fine.
func moveAside(stateDir string) (string, error) {
	path := filepath.Join(stateDir, store.FileName)
	dst := fmt.Sprintf("%s.broken-%s", path, time.Now().UTC().Format("20060102T150405"))
	if err := os.Rename(path, dst); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return "", fmt.Errorf("move the old store aside: %w", err)
	}
	return dst, nil
}
