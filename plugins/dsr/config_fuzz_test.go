package main

import (
	"testing"

	"github.com/braid-cni/braid/core/maglev"
	"github.com/braid-cni/braid/core/store"
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
			conf.portRange.First < 1 || conf.portRange.First > conf.portRange.Last || conf.portRange.String() != conf.NodePortRange ||
			!maglev.IsPrime(conf.MaglevTableSize) || conf.MaglevTableSize > 65521 {
			t.Errorf("accepted %+v", conf)
		}
	})
}

// FuzzParsePortRange: a range it accepts is one it can print back, exactly
// as written (so no sign, space, leading zero or trailing junk got in), and
// 1 ≤ first ≤ last; and every range printed parses back to itself.
func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"30000-32767", "1-65535", "0-1", "5-4", "30000 - 32767", "+1-+2", "1-2-3", "", "-",
		"30000-32767x", "030000-32767", "1-65536"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := store.ParsePortRange(s)
		if err != nil {
			return
		}
		if r.First < 1 || r.First > r.Last || r.String() != s {
			t.Errorf("%q parsed as %v", s, r)
		}
		if again, err := store.ParsePortRange(r.String()); err != nil || again != r {
			t.Errorf("%v printed as %q parses as %v, %v", r, r.String(), again, err)
		}
	})
}
