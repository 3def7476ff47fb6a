package agent

import (
	"cmp"
	"encoding/json"

	"github.com/braid-cni/braid/core/config"
	"github.com/braid-cni/braid/core/conflist"
)

// readConflist is the node's conflist as plugins to host, with where each
// one's config says the node store and pins are.
func readConflist(path string, cniPath []string) ([]*hosted, error) {
	plugins, err := conflist.Read(path, cniPath)
	if err != nil {
		return nil, err
	}
	var out []*hosted
	for _, p := range plugins {
		var c config.Common
		_ = json.Unmarshal(p.Conf, &c)
		c.StateDir = cmp.Or(c.StateDir, config.DefaultStateDir)
		c.BPFRoot = cmp.Or(c.BPFRoot, config.DefaultBPFRoot)
		out = append(out, &hosted{name: p.Type, bin: p.Bin, conf: p.Conf, stateDir: c.StateDir, bpfRoot: c.BPFRoot})
	}
	return out, nil
}
