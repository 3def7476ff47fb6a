package main

import (
	"github.com/braid-cni/braid/core/config"
	"github.com/containernetworking/cni/pkg/types"
)

// NetConf is native-route's configuration: the shared keys only; the node
// device comes from the node's identity (`braid node init --device`).
type NetConf struct {
	types.PluginConf
	config.Common
}

func parseConfig(stdin []byte) (*NetConf, error) {
	conf := &NetConf{}
	return conf, config.Parse(stdin, pluginName, conf)
}
