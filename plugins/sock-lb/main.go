// Command sock-lb is braid's socket-level load balancer: ClusterIP services
// are balanced in cgroup connect4/sendmsg4 hooks, and recvmsg4/getpeername4
// show the VIP back to the application.
package main

import (
	"github.com/braid-cni/braid/core/chained"
	"github.com/braid-cni/braid/core/config"
)

const pluginName = "sock-lb"

func main() {
	chained.Plugin{
		Name:     pluginName,
		Parse:    func(stdin []byte) (config.Plugin, error) { return parseConfig(stdin) },
		Open:     func(conf config.Plugin) (chained.Datapath, error) { return openDatapath(conf.(*NetConf)) },
		Counters: counterNames,
	}.Main()
}
