package agent

import (
	"cmp"
	"encoding/json"
	"fmt"

	"github.com/braid-cni/braid/core/config"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
)

// readConflist finds each plugin of the node's conflist and the config
// libcni would give it.
func readConflist(path string, cniPath []string) ([]*hosted, error) {
	list, err := libcni.ConfListFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("conflist %s: %w", path, err)
	}
	var out []*hosted
	for _, p := range list.Plugins {
		bin, err := invoke.FindInPath(p.Network.Type, cniPath)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: %w", p.Network.Type, err)
		}
		conf, err := pluginConfig(p.Bytes, list.Name, list.CNIVersion)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: %w", p.Network.Type, err)
		}
		var c config.Common
		_ = json.Unmarshal(conf, &c)
		c.StateDir = cmp.Or(c.StateDir, config.DefaultStateDir)
		c.BPFRoot = cmp.Or(c.BPFRoot, config.DefaultBPFRoot)
		out = append(out, &hosted{name: p.Network.Type, bin: bin, conf: conf, stateDir: c.StateDir, bpfRoot: c.BPFRoot})
	}
	return out, nil
}

// pluginConfig adds the list's name and version, as libcni does.
func pluginConfig(raw []byte, name, version string) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	m["name"], m["cniVersion"] = name, version
	return json.Marshal(m)
}
