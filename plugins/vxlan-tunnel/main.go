// Command vxlan-tunnel is braid's overlay routing plugin: one collect_md
// VXLAN device per node, a tunnel map from remote pod CIDRs to node IPs,
// encapsulation and decapsulation in eBPF.
package main

import (
	"github.com/braid-cni/braid/core/chained"
	"github.com/braid-cni/braid/core/config"
)

const pluginName = "vxlan-tunnel"

func main() {
	chained.Plugin{
		Name:     pluginName,
		Parse:    func(stdin []byte) (config.Plugin, error) { return parseConfig(stdin) },
		Open:     func(conf config.Plugin) (chained.Datapath, error) { return openDatapath(conf.(*NetConf)) },
		Counters: counterNames,
	}.Main()
}
