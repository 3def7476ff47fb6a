package main

import (
	"path/filepath"

	"github.com/braid-cni/braid/core/cgroup"
	"github.com/braid-cni/braid/core/cnierr"
	"github.com/braid-cni/braid/core/config"
	"github.com/containernetworking/cni/pkg/types"
)

// NetConf is sock-lb's configuration.
type NetConf struct {
	types.PluginConf
	config.Common
	// CgroupRoot is the cgroup v2 directory whose sockets are balanced
	// (default: the host's cgroup2 mount).
	CgroupRoot string `json:"cgroupRoot,omitempty"`
	// HostNamespaceOnly balances only the node netns's own sockets, leaving
	// pods to a per-packet path (what sidecar meshes ask for).
	HostNamespaceOnly bool `json:"hostNamespaceOnly,omitempty"`
}

func parseConfig(stdin []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := config.Parse(stdin, pluginName, conf); err != nil {
		return nil, err
	}
	if conf.CgroupRoot == "" {
		conf.CgroupRoot = cgroup.DefaultRoot()
	}
	if !filepath.IsAbs(conf.CgroupRoot) || !cgroup.IsV2(conf.CgroupRoot) {
		return nil, cnierr.Invalid("cgroupRoot", "%q is not a cgroup v2 directory", conf.CgroupRoot)
	}
	return conf, nil
}
