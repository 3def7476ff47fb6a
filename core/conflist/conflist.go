// Package conflist reads a node's conflist the way libcni runs it, for the
// two callers that run its plugins outside a runtime: `braid sync` (each
// plugin in reconcile mode) and `braid agent` (each plugin as a server).
package conflist

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
)

// Plugin is one plugin of the list: its type, its binary and the network
// config libcni would give it.
type Plugin struct {
	Type string
	Bin  string
	Conf []byte
}

// Read finds each plugin of the conflist at path in cniPath, in list order
// (the order its tcx programs compose in).
func Read(path string, cniPath []string) ([]Plugin, error) {
	list, err := libcni.ConfListFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("conflist %s: %w", path, err)
	}
	var out []Plugin
	for _, p := range list.Plugins {
		bin, err := invoke.FindInPath(p.Network.Type, cniPath)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: %w", p.Network.Type, err)
		}
		conf, err := pluginConfig(p.Bytes, list.Name, list.CNIVersion)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: %w", p.Network.Type, err)
		}
		out = append(out, Plugin{Type: p.Network.Type, Bin: bin, Conf: conf})
	}
	return out, nil
}

// pluginConfig adds the list's name and version, as libcni does.
func pluginConfig(raw []byte, name, version string) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	if m == nil { // the JSON was null
		return nil, fmt.Errorf("plugin config is not a JSON object")
	}
	m["name"], m["cniVersion"] = name, version
	return json.Marshal(m)
}

// Environ is this process's environment without the CNI_* variables: a
// runtime's would make a braid binary act as a CNI plugin.
func Environ() []string {
	var out []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "CNI_") {
			out = append(out, e)
		}
	}
	return out
}
