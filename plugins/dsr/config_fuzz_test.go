package main

import (
	"testing"

	"github.com/braid-cni/braid/core/maglev"
	"github.com/braid-cni/braid/internal/conffuzz"
)

// FuzzParseConfig: whatever a runtime passes on stdin, parseConfig answers
// with a sane configuration or a CNI error meaning bad input.
func FuzzParseConfig(f *testing.F) {
	for _, s := range conffuzz.Seeds(pluginName,
		map[string]any{"mode": "snat", "overlayDevice": "braid_vxlan", "nodePortRange": "30000-32767", "maglevTableSize": 251},
		map[string]any{"mode": "dr"}, map[string]any{"nodePortRange": "32767-30000"}, map[string]any{"nodePortRange": "0-65536"},
		map[string]any{"nodePortRange": "30000-"}, map[string]any{"nodePortRange": "1-1"},
		map[string]any{"maglevTableSize": 16384}, map[string]any{"maglevTableSize": 65537},
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
		if conf.Mode != modeDSR && conf.Mode != modeSNAT || len(conf.OverlayDevice) > 15 ||
			conf.portLo < 1 || conf.portLo > conf.portHi ||
			!maglev.IsPrime(conf.MaglevTableSize) || conf.MaglevTableSize > 65521 {
			t.Errorf("accepted %+v", conf)
		}
	})
}

// FuzzParsePortRange: a range it accepts is one it can print back.
func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"30000-32767", "1-65535", "0-1", "5-4", "30000 - 32767", "+1-+2", "1-2-3", "", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lo, hi, err := ParsePortRange(s)
		if err != nil {
			return
		}
		if lo < 1 || lo > hi {
			t.Errorf("%q: %d-%d", s, lo, hi)
		}
	})
}
