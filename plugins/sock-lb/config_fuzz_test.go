package main

import (
	"path/filepath"
	"testing"

	"github.com/braid-cni/braid/core/cgroup"
	"github.com/braid-cni/braid/internal/conffuzz"
)

// FuzzParseConfig: whatever a runtime passes on stdin, parseConfig answers
// with a sane configuration or a CNI error meaning bad input. cgroupRoot is
// checked against the machine's cgroup2 mount, read only.
func FuzzParseConfig(f *testing.F) {
	for _, s := range conffuzz.Seeds(pluginName,
		map[string]any{"cgroupRoot": cgroup.DefaultRoot(), "hostNamespaceOnly": true},
		map[string]any{"cgroupRoot": "/proc"}, map[string]any{"cgroupRoot": "relative"},
		map[string]any{"hostNamespaceOnly": "yes"},
	) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stdin []byte) {
		conf, err := parseConfig(stdin)
		if err != nil {
			conffuzz.CheckError(t, stdin, err)
			return
		}
		conffuzz.CheckAccepted(t, stdin, pluginName, conf)
		if !filepath.IsAbs(conf.CgroupRoot) || !cgroup.IsV2(conf.CgroupRoot) {
			t.Errorf("accepted cgroupRoot %q", conf.CgroupRoot)
		}
	})
}
