package conflist

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

// FuzzRead: braid sync and the agent read the node's conflist. It never
// panics; what is not JSON is an error naming the file; a list it takes
// gives its plugins as libcni reads them, in order, each found in the CNI
// path (a type with a slash is none), with a JSON config carrying the
// list's name and version.
func FuzzRead(f *testing.F) {
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
		`{"cniVersion":"1.0.0","name":"braid","plugins":[null]}`,
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
	f.Fuzz(func(t *testing.T, raw []byte) {
		if err := os.WriteFile(file, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		plugins, err := Read(file, []string{cniPath})
		if err != nil {
			if !json.Valid(raw) && !strings.Contains(err.Error(), file) {
				t.Fatalf("error %q does not name the conflist", err)
			}
			return
		}
		list, err := libcni.ConfListFromBytes(raw)
		if err != nil || len(plugins) != len(list.Plugins) {
			t.Fatalf("took %q: %d plugins; libcni: %v", raw, len(plugins), err)
		}
		for i, p := range plugins {
			var conf struct {
				Type       string `json:"type"`
				Name       string `json:"name"`
				CNIVersion string `json:"cniVersion"`
			}
			if err := json.Unmarshal(p.Conf, &conf); err != nil || p.Type != list.Plugins[i].Network.Type || conf.Type != p.Type ||
				conf.Name != list.Name || conf.CNIVersion != list.CNIVersion {
				t.Fatalf("plugin %s of %q: config %s (%v)", p.Type, raw, p.Conf, err)
			}
			if p.Bin != filepath.Join(cniPath, p.Type) || strings.Contains(p.Type, "/") {
				t.Fatalf("plugin %s of %q: binary %q", p.Type, raw, p.Bin)
			}
		}
	})
}
