package main

import (
	"github.com/braid-cni/braid/core/cnierr"
	"github.com/braid-cni/braid/core/config"
	"github.com/containernetworking/cni/pkg/types"
)

// VXLAN adds 50 bytes: outer Ethernet 14, IPv4 20, UDP 8, VXLAN 8.
const overhead = 50

// NetConf is vxlan-tunnel's configuration.
type NetConf struct {
	types.PluginConf
	config.Common
	// VXLANDevice is the node's overlay device (default braid_vxlan).
	VXLANDevice string `json:"vxlanDevice,omitempty"`
	// VXLANPort is the UDP port (default 8472, as Cilium and flannel use).
	VXLANPort int `json:"vxlanPort,omitempty"`
	// VNI is the VXLAN network identifier every node uses (default 1).
	VNI uint32 `json:"vni,omitempty"`
}

func parseConfig(stdin []byte) (*NetConf, error) {
	conf := &NetConf{VXLANDevice: "braid_vxlan", VXLANPort: 8472, VNI: 1}
	if err := config.Parse(stdin, pluginName, conf); err != nil {
		return nil, err
	}
	if n := len(conf.VXLANDevice); n == 0 || n > 15 {
		return nil, cnierr.Invalid("vxlanDevice", "%q must be 1 to 15 characters", conf.VXLANDevice)
	}
	if conf.VXLANPort < 1 || conf.VXLANPort > 65535 {
		return nil, cnierr.Invalid("vxlanPort", "%d is not a UDP port", conf.VXLANPort)
	}
	if conf.VNI == 0 || conf.VNI >= 1<<24 {
		return nil, cnierr.Invalid("vni", "%d is outside 1..16777215", conf.VNI)
	}
	return conf, nil
}
