package main

import (
	"errors"

	"github.com/braid-cni/braid/core/bpffs"
	"github.com/braid-cni/braid/core/cnierr"
	"github.com/braid-cni/braid/core/config"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/store"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/plugins/pkg/ipam"
)

// cmdStatus (CNI 1.1) reports whether this node can serve ADDs, and if not,
// why: no bpffs, no node identity, or the node device missing.
func cmdStatus(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	if err := nodeReady(conf.Common); err != nil {
		return err
	}
	// The spec requires asking a delegated IPAM plugin too: ADD needs it.
	if conf.IPAM.Type != "" {
		return cnierr.Wrap(ipam.ExecStatus(conf.IPAM.Type, args.StdinData), "ipam plugin %s", conf.IPAM.Type)
	}
	return nil
}

func nodeReady(c config.Common) error {
	if !bpffs.IsMounted(c.BPFRoot) {
		return cnierr.NotAvailable("bpffs is not mounted at %s (bpfRoot): run `braid node init`", c.BPFRoot)
	}
	st, err := plugin.OpenStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.View(func(tx *store.Tx) error {
		node, err := tx.Node()
		if errors.Is(err, store.ErrNotInitialized) {
			return cnierr.NotAvailable("%v (stateDir %s)", err, c.StateDir)
		}
		if err != nil {
			return err
		}
		if _, err := nodeMTU(node.Device); err != nil {
			return cnierr.NotAvailable("%v", err)
		}
		return nil
	})
}
