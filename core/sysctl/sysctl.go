// Package sysctl sets the kernel knobs the datapath needs in the current
// netns. A new netns does not inherit them from the root one, so every
// plugin sets what it relies on, explicitly, every time.
package sysctl

import (
	"fmt"
	"strings"

	"github.com/containernetworking/plugins/pkg/utils/sysctl"
)

// Setting is one knob, as a /proc/sys path relative name ("net/ipv4/ip_forward").
type Setting struct{ Name, Value string }

// Ensure applies settings that differ and returns what it changed.
func Ensure(settings ...Setting) ([]string, error) {
	var changed []string
	for _, s := range settings {
		cur, err := sysctl.Sysctl(s.Name)
		if err == nil && strings.TrimSpace(cur) == s.Value {
			continue
		}
		if _, err := sysctl.Sysctl(s.Name, s.Value); err != nil {
			return changed, fmt.Errorf("sysctl %s=%s: %w", s.Name, s.Value, err)
		}
		changed = append(changed, fmt.Sprintf("sysctl %s=%s", strings.ReplaceAll(s.Name, "/", "."), s.Value))
	}
	return changed, nil
}

// Forwarding is what a node that routes pod traffic needs: forwarding on,
// and reverse-path filtering off where packets arrive from the datapath.
func Forwarding(devices ...string) []Setting {
	s := []Setting{{"net/ipv4/ip_forward", "1"}, {"net/ipv4/conf/all/rp_filter", "0"}}
	for _, d := range devices {
		s = append(s, Setting{"net/ipv4/conf/" + d + "/rp_filter", "0"})
	}
	return s
}
