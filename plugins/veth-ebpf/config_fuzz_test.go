package main

import (
	"testing"

	"github.com/braid-cni/braid/internal/conffuzz"
)

// FuzzParseConfig: whatever a runtime passes on stdin, parseConfig answers
// with a sane configuration or a CNI error meaning bad input.
func FuzzParseConfig(f *testing.F) {
	for _, s := range conffuzz.Seeds(pluginName,
		map[string]any{"mtu": 1450}, map[string]any{"mtu": 100}, map[string]any{"mtu": "1400"},
		map[string]any{"ipam": map[string]any{"type": "host-local", "subnet": "198.19.1.0/24"}},
		map[string]any{"dns": map[string]any{"nameservers": []string{"198.18.0.53"}}},
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
		if conf.MTU != 0 && (conf.MTU < 576 || conf.MTU > 65535) {
			t.Errorf("accepted mtu %d", conf.MTU)
		}
	})
}
