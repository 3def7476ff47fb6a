// Command native-route is braid's routing plugin without an overlay: routes
// to other nodes' pod CIDRs via their node IPs, and eBPF that forwards pod
// traffic with bpf_fib_lookup + bpf_redirect(_neigh) and delivers arriving
// traffic with bpf_redirect_peer.
package main

import (
	"github.com/braid-cni/braid/core/chained"
	"github.com/braid-cni/braid/core/config"
)

const pluginName = "native-route"

func main() {
	chained.Plugin{
		Name:     pluginName,
		Parse:    func(stdin []byte) (config.Plugin, error) { return parseConfig(stdin) },
		Open:     func(conf config.Plugin) (chained.Datapath, error) { return openDatapath(conf.(*NetConf)) },
		Counters: counterNames,
	}.Main()
}
