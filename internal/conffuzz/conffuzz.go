// Package conffuzz is what the plugins' config parser fuzz targets share:
// seed configurations and the properties every parser must keep, whatever
// arrives on stdin: never panic, refuse with a CNI error of the right code
// (6: not decodable, 7: invalid), and accept only a configuration whose
// shared keys hold up (absolute paths, a positive lock timeout, a level).
package conffuzz

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/config"
	"github.com/containernetworking/cni/pkg/types"
)

// Seeds are configurations for pluginType: a minimal one, one with every
// shared key, and malformed ones, plus extra (the plugin's own keys).
func Seeds(pluginType string, extra ...map[string]any) [][]byte {
	base := func(kv map[string]any) []byte {
		m := map[string]any{"cniVersion": "1.0.0", "name": "braid", "type": pluginType}
		for k, v := range kv {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return b
	}
	out := [][]byte{
		base(nil),
		base(map[string]any{"stateDir": "/var/lib/braid", "bpfRoot": "/sys/fs/bpf/braid", "logFile": "/var/log/braid.log",
			"logLevel": "debug", "lockTimeout": "250ms"}),
		base(map[string]any{"stateDri": "/tmp"}),
		base(map[string]any{"lockTimeout": 5}),
		base(map[string]any{"bpfRoot": "relative"}),
		base(map[string]any{"prevResult": map[string]any{"cniVersion": "1.0.0", "interfaces": []any{map[string]any{"name": "brd0"}}}}),
		base(map[string]any{"cni.dev/valid-attachments": []any{map[string]any{"containerID": "c", "ifname": "eth0"}}}),
		[]byte(`{"cniVersion":"1.0.0","name":"braid","type":"` + pluginType + `",`),
		[]byte(`[]`),
		[]byte(`null`),
		[]byte(``),
	}
	for _, kv := range extra {
		out = append(out, base(kv))
	}
	return out
}

// CheckError fails t unless err is a CNI error meaning bad input.
func CheckError(t *testing.T, stdin []byte, err error) {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("refused with a non-CNI error %T %q for %q", err, err, stdin)
	}
	if e.Code != types.ErrDecodingFailure && e.Code != types.ErrInvalidNetworkConfig {
		t.Errorf("refused with CNI code %d (%s) for %q, want %d or %d", e.Code, e.Msg, stdin,
			types.ErrDecodingFailure, types.ErrInvalidNetworkConfig)
	}
	if e.Msg == "" {
		t.Errorf("refused with an empty message for %q", stdin)
	}
}

// CheckAccepted fails t unless an accepted configuration is sane: meant for
// pluginType, a version, and shared keys that hold up.
func CheckAccepted(t *testing.T, stdin []byte, pluginType string, conf config.Plugin) {
	t.Helper()
	std := config.Standard(conf)
	c := conf.Shared()
	var problems []string
	if std == nil || std.Type != pluginType || std.CNIVersion == "" {
		problems = append(problems, fmt.Sprintf("standard keys %+v", std))
	}
	for key, p := range map[string]string{"stateDir": c.StateDir, "bpfRoot": c.BPFRoot} {
		if !filepath.IsAbs(p) {
			problems = append(problems, fmt.Sprintf("%s %q is not absolute", key, p))
		}
	}
	if c.LogFile != "" && !filepath.IsAbs(c.LogFile) {
		problems = append(problems, fmt.Sprintf("logFile %q is not absolute", c.LogFile))
	}
	if d, err := time.ParseDuration(c.LockTimeout); err != nil || d <= 0 {
		problems = append(problems, fmt.Sprintf("lockTimeout %q", c.LockTimeout))
	}
	var level slog.Level
	if level.UnmarshalText([]byte(c.LogLevel)) != nil {
		problems = append(problems, fmt.Sprintf("logLevel %q", c.LogLevel))
	}
	if len(problems) > 0 {
		t.Errorf("accepted %q: %v", stdin, problems)
	}
}
