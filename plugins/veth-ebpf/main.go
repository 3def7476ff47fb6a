// Command veth-ebpf is braid's interface plugin: a veth pair per pod, its
// address, anti-spoofing and same-node delivery with bpf_redirect_peer.
package main

import (
	"strings"

	"github.com/braid-cni/braid/core/plugin"
	"github.com/containernetworking/cni/pkg/skel"
)

func main() {
	plugin.Main(pluginName, skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		GC:     cmdGC,
		Status: cmdStatus,
	}, reconcile, plugin.WithGC(collect), plugin.WithRebuild(rebuild), plugin.WithCounters(counterNames...),
		// from_container (pinned <host veth>_ingress) runs before the
		// chained plugins' programs: they redirect.
		plugin.WithFirst(func(pin string) bool { return strings.HasSuffix(pin, "_ingress") }))
}
