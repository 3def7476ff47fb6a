// Command sock-lb is braid's socket-level load balancer: ClusterIP services
// (and node ports at any node IP, for in-cluster clients) are balanced in
// cgroup connect/sendmsg hooks, IPv4 and v4-mapped IPv6, and
// recvmsg/getpeername show the VIP back to the application.
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
