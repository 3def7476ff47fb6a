package main

import (
	"time"

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

// Default lifetimes of NAT and DSR state (see Timeouts).
const (
	defaultTCPSyn         = 20 * time.Second
	defaultTCPEstablished = 6 * time.Hour
	defaultTCPClose       = 10 * time.Second
	defaultTCPReset       = time.Second
	defaultUDP            = 60 * time.Second
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
	// VNI is the overlay's VXLAN network identifier (vxlan-tunnel's vni,
	// default 1): tunnel packets with another are dropped before dsr reads
	// them.
	VNI uint32 `json:"vni,omitempty"`
	// NodePortRange is "first-last" (default 30000-32767, as Kubernetes).
	NodePortRange string `json:"nodePortRange,omitempty"`
	// SNATPortRange is "first-last", the node's source ports for SNAT
	// flows. Default: the largest range of 1024-65535 outside the node's
	// ephemeral ports (net.ipv4.ip_local_port_range) and NodePortRange.
	// It must not overlap either.
	SNATPortRange string `json:"snatPortRange,omitempty"`
	// MaglevTableSize is the per-service lookup table size, a prime.
	MaglevTableSize int `json:"maglevTableSize,omitempty"`
	// Timeouts are the lifetimes of flow and SNAT entries.
	Timeouts Timeouts `json:"timeouts,omitempty"`

	portRange store.PortRange
	snatRange *store.PortRange // nil: from the ephemeral range at reconcile
	life      lifetimes
}

// Timeouts are Go durations ("20s", "6h"): how long an entry lives after
// its connection's last packet, by state.
type Timeouts struct {
	// TCPSyn: a SYN seen, the backend has not answered (default 20s).
	TCPSyn string `json:"tcpSyn,omitempty"`
	// TCPEstablished: the backend answered (default 6h).
	TCPEstablished string `json:"tcpEstablished,omitempty"`
	// TCPClose: a FIN seen (default 10s).
	TCPClose string `json:"tcpClose,omitempty"`
	// TCPReset: a RST seen (default 1s).
	TCPReset string `json:"tcpReset,omitempty"`
	// UDP: since the flow's last datagram (default 60s).
	UDP string `json:"udp,omitempty"`
}

// lifetimes are Timeouts parsed.
type lifetimes struct{ tcpSyn, tcpEstablished, tcpClose, tcpReset, udp time.Duration }

func parseConfig(stdin []byte) (*NetConf, error) {
	conf := &NetConf{Mode: modeDSR, NodePortRange: store.DefaultNodePortRange, MaglevTableSize: maglev.DefaultSize, VNI: 1}
	if err := config.Parse(stdin, pluginName, conf); err != nil {
		return nil, err
	}
	if conf.Mode != modeDSR && conf.Mode != modeSNAT {
		return nil, cnierr.Invalid("mode", "%q must be dsr or snat", conf.Mode)
	}
	if len(conf.OverlayDevice) > 15 {
		return nil, cnierr.Invalid("overlayDevice", "%q is longer than 15 characters", conf.OverlayDevice)
	}
	if conf.VNI == 0 || conf.VNI >= 1<<24 {
		return nil, cnierr.Invalid("vni", "%d is outside 1..16777215", conf.VNI)
	}
	var err error
	if conf.portRange, err = store.ParsePortRange(conf.NodePortRange); err != nil {
		return nil, cnierr.Invalid("nodePortRange", "%v", err)
	}
	if conf.SNATPortRange != "" {
		r, err := store.ParsePortRange(conf.SNATPortRange)
		if err != nil {
			return nil, cnierr.Invalid("snatPortRange", "%v", err)
		}
		if overlaps(r, conf.portRange) {
			return nil, cnierr.Invalid("snatPortRange", "%s overlaps nodePortRange %s", r, conf.portRange)
		}
		conf.snatRange = &r
	}
	if !maglev.IsPrime(conf.MaglevTableSize) || conf.MaglevTableSize > 65521 {
		return nil, cnierr.Invalid("maglevTableSize", "%d must be a prime up to 65521 (e.g. 251, 1021, 16381)", conf.MaglevTableSize)
	}
	if conf.life, err = conf.Timeouts.parse(); err != nil {
		return nil, err
	}
	return conf, nil
}

// parse reads each timeout, or its default.
func (t Timeouts) parse() (lifetimes, error) {
	var l lifetimes
	for _, f := range []struct {
		key, s string
		def    time.Duration
		out    *time.Duration
	}{
		{"timeouts.tcpSyn", t.TCPSyn, defaultTCPSyn, &l.tcpSyn},
		{"timeouts.tcpEstablished", t.TCPEstablished, defaultTCPEstablished, &l.tcpEstablished},
		{"timeouts.tcpClose", t.TCPClose, defaultTCPClose, &l.tcpClose},
		{"timeouts.tcpReset", t.TCPReset, defaultTCPReset, &l.tcpReset},
		{"timeouts.udp", t.UDP, defaultUDP, &l.udp},
	} {
		*f.out = f.def
		if f.s == "" {
			continue
		}
		d, err := time.ParseDuration(f.s)
		if err != nil || d <= 0 || d > 7*24*time.Hour {
			return l, cnierr.Invalid(f.key, "%q must be a duration between 1ns and 168h (e.g. 20s, 6h)", f.s)
		}
		*f.out = d
	}
	return l, nil
}

func overlaps(a, b store.PortRange) bool { return a.First <= b.Last && b.First <= a.Last }
