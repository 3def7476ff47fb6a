package main

import (
	"github.com/braid-cni/braid/core/cnierr"
	"github.com/braid-cni/braid/core/config"
	"github.com/braid-cni/braid/core/maglev"
	"github.com/braid-cni/braid/core/store"
	"github.com/containernetworking/cni/pkg/types"
)

// Modes.
const (
	modeDSR  = "dsr"
	modeSNAT = "snat"
)

// NetConf is dsr's configuration.
type NetConf struct {
	types.PluginConf
	config.Common
	// Mode is dsr (default) or snat, for underlays that drop IP options.
	Mode string `json:"mode,omitempty"`
	// OverlayDevice is the VXLAN device in tunnel mode (vxlan-tunnel's
	// vxlanDevice); empty means native routing.
	OverlayDevice string `json:"overlayDevice,omitempty"`
	// NodePortRange is "first-last" (default 30000-32767, as Kubernetes).
	NodePortRange string `json:"nodePortRange,omitempty"`
	// MaglevTableSize is the per-service lookup table size, a prime.
	MaglevTableSize int `json:"maglevTableSize,omitempty"`

	portRange store.PortRange
}

func parseConfig(stdin []byte) (*NetConf, error) {
	conf := &NetConf{Mode: modeDSR, NodePortRange: store.DefaultNodePortRange, MaglevTableSize: maglev.DefaultSize}
	if err := config.Parse(stdin, pluginName, conf); err != nil {
		return nil, err
	}
	if conf.Mode != modeDSR && conf.Mode != modeSNAT {
		return nil, cnierr.Invalid("mode", "%q must be dsr or snat", conf.Mode)
	}
	if len(conf.OverlayDevice) > 15 {
		return nil, cnierr.Invalid("overlayDevice", "%q is longer than 15 characters", conf.OverlayDevice)
	}
	var err error
	if conf.portRange, err = store.ParsePortRange(conf.NodePortRange); err != nil {
		return nil, cnierr.Invalid("nodePortRange", "%v", err)
	}
	if !maglev.IsPrime(conf.MaglevTableSize) || conf.MaglevTableSize > 65521 {
		return nil, cnierr.Invalid("maglevTableSize", "%d must be a prime up to 65521 (e.g. 251, 1021, 16381)", conf.MaglevTableSize)
	}
	return conf, nil
}
