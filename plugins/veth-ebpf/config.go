package main

import (
	"github.com/braid-cni/braid/core/cnierr"
	"github.com/braid-cni/braid/core/config"
	"github.com/containernetworking/cni/pkg/types"
)

// pluginName is this plugin's CNI type and its bpffs folder.
const pluginName = "veth-ebpf"

// NetConf is veth-ebpf's configuration: the standard and shared keys, plus
// mtu (default: the node device's MTU).
type NetConf struct {
	types.PluginConf
	config.Common
	MTU int `json:"mtu,omitempty"`
}

func parseConfig(stdin []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := config.Parse(stdin, pluginName, conf); err != nil {
		return nil, err
	}
	if conf.MTU != 0 && (conf.MTU < 576 || conf.MTU > 65535) {
		return nil, cnierr.Invalid("mtu", "%d is outside 576..65535", conf.MTU)
	}
	return conf, nil
}
