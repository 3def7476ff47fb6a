package kit

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// CheckSetup says what is missing when repo lacks one of bins (paths in
// the repository: bin/braid, bin/tools/cnitool…) or PATH one of tools.
func CheckSetup(repo string, bins, tools []string) error {
	for _, bin := range bins {
		if _, err := os.Stat(filepath.Join(repo, bin)); err != nil {
			return fmt.Errorf("%s is missing: run `make deps build` first", bin)
		}
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed: run hack/deps.sh", tool)
		}
	}
	return nil
}

// CNIPath is where repo keeps braid's plugins and the reference ones.
func CNIPath(repo string) string {
	return filepath.Join(repo, "bin") + ":" + filepath.Join(repo, "bin/tools/cni")
}

// UseCNI sets what cnitool, and the plugins it runs, read from the
// environment: repo's plugins, the networks in confDir, the pod's ifname.
func UseCNI(repo, confDir, ifName string) {
	os.Setenv("CNI_PATH", CNIPath(repo))
	os.Setenv("NETCONFPATH", confDir)
	os.Setenv("CNI_IFNAME", ifName)
}

// ChainConflist is repo's chain-configs/<file> as the network called
// network, with edit applied to every plugin's config (a node's stateDir,
// bpfRoot and the like).
func ChainConflist(repo, file, network string, edit func(plugin map[string]any)) ([]byte, error) {
	raw, err := os.ReadFile(filepath.Join(repo, "chain-configs", file))
	if err != nil {
		return nil, err
	}
	var list map[string]any
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	plugins, _ := list["plugins"].([]any)
	for _, p := range plugins {
		if p, ok := p.(map[string]any); ok {
			edit(p)
		}
	}
	list["name"] = network
	return json.MarshalIndent(list, "", "  ")
}
