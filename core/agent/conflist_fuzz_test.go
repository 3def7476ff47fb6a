package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

// FuzzReadConflist: the agent reads the node's conflist at start. It never
// panics; what is not JSON is an error naming the file; a list it takes
// gives its plugins (as libcni reads them), each found in the CNI path,
// with a JSON config carrying the list's name and version, and a store and
// bpffs folder (its own or the defaults).
func FuzzReadConflist(f *testing.F) {
	files, err := filepath.Glob("../../chain-configs/*.conflist")
	if err != nil || len(files) == 0 {
		f.Fatalf("no chain-configs/*.conflist: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	for _, s := range []string{"", "{", "null", `{"name":"braid","plugins":[]}`,
		`{"cniVersion":"1.0.0","name":"braid","plugins":[{"type":"veth-ebpf","stateDir":"/s","bpfRoot":7}]}`,
		`{"cniVersion":"1.0.0","name":"braid","plugins":[{"type":"../veth-ebpf"}]}`,
		`{"cniVersion":"1.0.0","name":"braid","plugins":[{"type":"bridge"}]}`} {
		f.Add([]byte(s))
	}
	cniPath := f.TempDir()
	for _, name := range []string{"veth-ebpf", "vxlan-tunnel", "native-route", "sock-lb", "dsr", "ptp"} {
		if err := os.WriteFile(filepath.Join(cniPath, name), nil, 0o700); err != nil {
			f.Fatal(err)
		}
	}
	file := filepath.Join(f.TempDir(), "braid.conflist")
	f.Fuzz(func(t *testing.T, conflist []byte) {
		if err := os.WriteFile(file, conflist, 0o600); err != nil {
			t.Fatal(err)
		}
		plugins, err := readConflist(file, []string{cniPath})
		if err != nil {
			if !json.Valid(conflist) && !strings.Contains(err.Error(), file) {
				t.Fatalf("error %q does not name the conflist", err)
			}
			return
		}
		list, err := libcni.ConfListFromBytes(conflist)
		if err != nil || len(plugins) != len(list.Plugins) {
			t.Fatalf("took %q: %d plugins; libcni: %v", conflist, len(plugins), err)
		}
		for i, p := range plugins {
			var conf struct {
				Type       string `json:"type"`
				Name       string `json:"name"`
				CNIVersion string `json:"cniVersion"`
			}
			if err := json.Unmarshal(p.conf, &conf); err != nil || p.name != list.Plugins[i].Network.Type || conf.Type != p.name ||
				conf.Name != list.Name || conf.CNIVersion != list.CNIVersion {
				t.Fatalf("plugin %s of %q: config %s (%v)", p.name, conflist, p.conf, err)
			}
			if p.bin != filepath.Join(cniPath, p.name) || p.stateDir == "" || p.bpfRoot == "" {
				t.Fatalf("plugin %s of %q: binary %q, store %q, bpffs %q", p.name, conflist, p.bin, p.stateDir, p.bpfRoot)
			}
		}
	})
}
