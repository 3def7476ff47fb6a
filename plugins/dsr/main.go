// Command dsr is braid's NodePort plugin with direct server return: the
// entry node forwards a request to the backend's node with the service
// address in an IPv4 option (or inside the tunnel), and the backend's node
// answers the client directly.
package main

import (
	"github.com/braid-cni/braid/core/chained"
	"github.com/braid-cni/braid/core/config"
)

const pluginName = "dsr"

func main() {
	chained.Plugin{
		Name:     pluginName,
		Parse:    func(stdin []byte) (config.Plugin, error) { return parseConfig(stdin) },
		Open:     func(conf config.Plugin) (chained.Datapath, error) { return openDatapath(conf.(*NetConf)) },
		Counters: counterNames,
	}.Main()
}
