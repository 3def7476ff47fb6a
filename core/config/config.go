// Package config parses the network configuration every braid plugin
// receives on stdin: the standard CNI keys, the keys all braid plugins share
// and the plugin's own, validated strictly so a typo fails loudly.
package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/braid-cni/braid/core/cnierr"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// Real-node defaults of the shared keys.
const (
	DefaultStateDir    = "/var/lib/braid"
	DefaultBPFRoot     = "/sys/fs/bpf/braid"
	DefaultLockTimeout = 10 * time.Second
)

// Common holds the keys every braid plugin accepts.
type Common struct {
	StateDir    string `json:"stateDir,omitempty"`
	BPFRoot     string `json:"bpfRoot,omitempty"`
	LogFile     string `json:"logFile,omitempty"`
	LogLevel    string `json:"logLevel,omitempty"`
	LockTimeout string `json:"lockTimeout,omitempty"`
	// StoreFsync makes every CNI call fsync the node store (core/plugin.OpenStore).
	StoreFsync bool `json:"storeFsync,omitempty"`
}

// Shared returns the embedded shared keys; plugin configs get it by embedding.
func (c *Common) Shared() *Common { return c }

// Timeout is the parsed lockTimeout (validated by Parse).
func (c *Common) Timeout() time.Duration {
	d, err := time.ParseDuration(c.LockTimeout)
	if err != nil {
		return DefaultLockTimeout
	}
	return d
}

// Level is the parsed logLevel (validated by Parse).
func (c *Common) Level() slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(c.LogLevel))
	return l
}

func (c *Common) defaultsAndValidate() error {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.BPFRoot == "" {
		c.BPFRoot = DefaultBPFRoot
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.LockTimeout == "" {
		c.LockTimeout = DefaultLockTimeout.String()
	}
	for key, p := range map[string]string{"stateDir": c.StateDir, "bpfRoot": c.BPFRoot} {
		if !filepath.IsAbs(p) {
			return cnierr.Invalid(key, "%q is not an absolute path", p)
		}
	}
	if c.LogFile != "" && !filepath.IsAbs(c.LogFile) {
		return cnierr.Invalid("logFile", "%q is not an absolute path", c.LogFile)
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return cnierr.Invalid("logLevel", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	if d, err := time.ParseDuration(c.LockTimeout); err != nil || d <= 0 {
		return cnierr.Invalid("lockTimeout", "%q is not a positive duration such as \"10s\"", c.LockTimeout)
	}
	return nil
}

// Plugin is what a plugin's config struct provides: the standard keys (by
// embedding types.PluginConf) and the shared ones (by embedding Common).
type Plugin interface {
	Shared() *Common
}

// standardKeys are set by runtimes and libcni, not by braid.
var standardKeys = []string{
	"cniVersion", "name", "type", "capabilities", "ipam", "dns", "args",
	"prevResult", "runtimeConfig", "cni.dev/valid-attachments", "cni.dev/attachments",
}

// Parse decodes stdin into conf (a pointer to a struct embedding
// types.PluginConf and Common), checks that it is meant for pluginType,
// rejects keys nobody knows, applies defaults and parses prevResult.
func Parse(stdin []byte, pluginType string, conf Plugin) error {
	if err := json.Unmarshal(stdin, conf); err != nil {
		return types.NewError(types.ErrDecodingFailure, "network configuration is not valid JSON: "+err.Error(), "")
	}
	if err := rejectUnknownKeys(stdin, conf); err != nil {
		return err
	}
	std := Standard(conf)
	if std == nil {
		return fmt.Errorf("config: %T does not embed types.PluginConf", conf)
	}
	if std.Type != pluginType {
		return cnierr.Invalid("type", "this is the %s plugin, the config names %q", pluginType, std.Type)
	}
	if std.CNIVersion == "" {
		return cnierr.Invalid("cniVersion", "missing")
	}
	if err := conf.Shared().defaultsAndValidate(); err != nil {
		return err
	}
	if std.RawPrevResult != nil {
		if err := version.ParsePrevResult(std); err != nil {
			return types.NewError(types.ErrDecodingFailure, "prevResult cannot be parsed: "+err.Error(), "")
		}
	}
	return nil
}

// Standard returns the standard CNI keys of a plugin config.
func Standard(conf Plugin) *types.PluginConf {
	v := reflect.ValueOf(conf).Elem()
	f := v.FieldByName("PluginConf")
	if !f.IsValid() {
		return nil
	}
	pc, _ := f.Addr().Interface().(*types.PluginConf)
	return pc
}

// rejectUnknownKeys names the first top-level key that neither CNI nor the
// plugin defines: a misspelt "stateDri" must not silently use the default.
func rejectUnknownKeys(stdin []byte, conf any) error {
	var raw map[string]json.RawMessage
	if err := json.NewDecoder(bytes.NewReader(stdin)).Decode(&raw); err != nil {
		return types.NewError(types.ErrDecodingFailure, "network configuration is not a JSON object", "")
	}
	known := jsonKeys(reflect.TypeOf(conf).Elem())
	var unknown []string
	for k := range raw {
		if !slices.Contains(standardKeys, k) && !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return cnierr.Invalid(unknown[0], "unknown key (known: %s)", strings.Join(known, ", "))
}

// jsonKeys lists the JSON names of t's fields, following embedded structs.
func jsonKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" {
			if f.Type == reflect.TypeOf(types.PluginConf{}) {
				continue
			}
			keys = append(keys, jsonKeys(f.Type)...)
			continue
		}
		if name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}
