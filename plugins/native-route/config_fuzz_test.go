package main

import (
	"testing"

	"github.com/braid-cni/braid/internal/conffuzz"
)

// FuzzParseConfig: whatever a runtime passes on stdin, parseConfig answers
// with a sane configuration or a CNI error meaning bad input.
func FuzzParseConfig(f *testing.F) {
	for _, s := range conffuzz.Seeds(pluginName, map[string]any{"device": "eth0"}) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stdin []byte) {
		conf, err := parseConfig(stdin)
		if err != nil {
			conffuzz.CheckError(t, stdin, err)
			return
		}
		conffuzz.CheckAccepted(t, stdin, pluginName, conf)
	})
}
