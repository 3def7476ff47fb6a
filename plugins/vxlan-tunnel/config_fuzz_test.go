package main

import (
	"testing"

	"github.com/braid-cni/braid/internal/conffuzz"
)

// FuzzParseConfig: whatever a runtime passes on stdin, parseConfig answers
// with a sane configuration or a CNI error meaning bad input.
func FuzzParseConfig(f *testing.F) {
	for _, s := range conffuzz.Seeds(pluginName,
		map[string]any{"vxlanPort": 8472, "vni": 1, "vxlanDevice": "braid_vxlan"},
		map[string]any{"vxlanPort": 0}, map[string]any{"vni": 1 << 24}, map[string]any{"vni": -1},
		map[string]any{"vxlanDevice": "a_device_name_too_long"}, map[string]any{"vxlanDevice": ""},
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
		if n := len(conf.VXLANDevice); n == 0 || n > 15 || conf.VXLANPort < 1 || conf.VXLANPort > 65535 ||
			conf.VNI == 0 || conf.VNI >= 1<<24 {
			t.Errorf("accepted device %q, port %d, vni %d", conf.VXLANDevice, conf.VXLANPort, conf.VNI)
		}
	})
}
