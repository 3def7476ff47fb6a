// Command veth-ebpf is braid's interface plugin: a veth pair per pod, its
// address, anti-spoofing and same-node delivery with bpf_redirect_peer.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/utils/buildversion"
)

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		GC:     cmdGC,
		Status: cmdStatus,
	}, version.PluginSupports("0.4.0", "1.0.0", "1.1.0"), buildversion.BuildString(pluginName))
}
