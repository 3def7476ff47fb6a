package config_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/config"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// testConf is a plugin config as a braid plugin declares one.
type testConf struct {
	types.PluginConf
	config.Common
	Widget string `json:"widget,omitempty"`
}

const testType = "test-plugin"

// conf builds a config document: the minimal valid one plus extra, which
// is spliced in verbatim (a leading comma included).
func conf(extra string) string {
	return `{"cniVersion":"1.0.0","name":"net","type":"` + testType + `"` + extra + `}`
}

func parse(t *testing.T, doc string) (*testConf, error) {
	t.Helper()
	c := &testConf{}
	return c, config.Parse([]byte(doc), testType, c)
}

// cniCode returns err's CNI error code, failing t if err is not one.
func cniCode(t *testing.T, err error) (uint, string) {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *types.Error", err, err)
	}
	return e.Code, e.Msg
}

func TestParseDefaults(t *testing.T) {
	c, err := parse(t, conf(`,"widget":"w"`))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Common{
		StateDir:    config.DefaultStateDir,
		BPFRoot:     config.DefaultBPFRoot,
		LogLevel:    "info",
		LockTimeout: config.DefaultLockTimeout.String(),
	}
	if c.Common != want {
		t.Errorf("Common = %+v, want %+v", c.Common, want)
	}
	if c.Widget != "w" || c.Name != "net" || c.CNIVersion != "1.0.0" {
		t.Errorf("fields not decoded: %+v", c)
	}
	if c.Timeout() != config.DefaultLockTimeout || c.Level() != slog.LevelInfo {
		t.Errorf("Timeout() = %v, Level() = %v", c.Timeout(), c.Level())
	}
	if c.Shared() != &c.Common {
		t.Error("Shared() does not return the embedded Common")
	}
}

func TestParseExplicitValues(t *testing.T) {
	c, err := parse(t, conf(`,"stateDir":"/run/s","bpfRoot":"/run/b","logFile":"/run/l.log","logLevel":"debug","lockTimeout":"250ms"`))
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/run/s" || c.BPFRoot != "/run/b" || c.LogFile != "/run/l.log" {
		t.Errorf("paths = %+v", c.Common)
	}
	if c.Timeout() != 250*time.Millisecond || c.Level() != slog.LevelDebug {
		t.Errorf("Timeout() = %v, Level() = %v", c.Timeout(), c.Level())
	}
}

func TestParseStandardKeysAccepted(t *testing.T) {
	doc := conf(`,"capabilities":{"portMappings":true},"ipam":{"type":"host-local"},"dns":{"nameservers":["1.1.1.1"]},` +
		`"args":{"cni":{}},"runtimeConfig":{"x":1},"cni.dev/valid-attachments":[],"cni.dev/attachments":[]`)
	if _, err := parse(t, doc); err != nil {
		t.Fatal(err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		code uint
		msg  string // a substring the message must contain
	}{
		{"unknown key", conf(`,"stateDri":"/x"`), types.ErrInvalidNetworkConfig, `"stateDri"`},
		{"unknown keys, first named", conf(`,"zz":1,"aa":2`), types.ErrInvalidNetworkConfig, `"aa"`},
		{"key with wrong case", conf(`,"StateDir":"/x"`), types.ErrInvalidNetworkConfig, `"StateDir"`},
		{"wrong type", `{"cniVersion":"1.0.0","name":"n","type":"bridge"}`, types.ErrInvalidNetworkConfig, `"type"`},
		{"missing type", `{"cniVersion":"1.0.0","name":"n"}`, types.ErrInvalidNetworkConfig, `"type"`},
		{"missing cniVersion", `{"name":"n","type":"` + testType + `"}`, types.ErrInvalidNetworkConfig, `"cniVersion"`},
		{"relative stateDir", conf(`,"stateDir":"var/lib/braid"`), types.ErrInvalidNetworkConfig, `"stateDir"`},
		{"relative bpfRoot", conf(`,"bpfRoot":"bpf"`), types.ErrInvalidNetworkConfig, `"bpfRoot"`},
		{"relative logFile", conf(`,"logFile":"braid.log"`), types.ErrInvalidNetworkConfig, `"logFile"`},
		{"bad logLevel", conf(`,"logLevel":"chatty"`), types.ErrInvalidNetworkConfig, `"logLevel"`},
		{"bad lockTimeout", conf(`,"lockTimeout":"soon"`), types.ErrInvalidNetworkConfig, `"lockTimeout"`},
		{"zero lockTimeout", conf(`,"lockTimeout":"0s"`), types.ErrInvalidNetworkConfig, `"lockTimeout"`},
		{"negative lockTimeout", conf(`,"lockTimeout":"-1s"`), types.ErrInvalidNetworkConfig, `"lockTimeout"`},
		{"malformed JSON", `{"cniVersion":`, types.ErrDecodingFailure, "not valid JSON"},
		{"trailing garbage", conf(``) + `x`, types.ErrDecodingFailure, "not valid JSON"},
		{"not an object", `["cniVersion"]`, types.ErrDecodingFailure, ""},
		{"wrong value type", conf(`,"stateDir":7`), types.ErrDecodingFailure, ""},
		{"bad prevResult", conf(`,"prevResult":{"cniVersion":"1.0.0","ips":"nope"}`), types.ErrDecodingFailure, "prevResult"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.doc)
			if err == nil {
				t.Fatal("Parse accepted the config")
			}
			code, msg := cniCode(t, err)
			if code != tc.code {
				t.Errorf("code = %d, want %d (%s)", code, tc.code, msg)
			}
			if !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q does not contain %q", msg, tc.msg)
			}
		})
	}
}

func TestParsePrevResult(t *testing.T) {
	doc := conf(`,"prevResult":{"cniVersion":"1.0.0",` +
		`"interfaces":[{"name":"veth1","mac":"02:00:00:00:00:01"},{"name":"eth0","sandbox":"/var/run/netns/p"}],` +
		`"ips":[{"address":"198.19.0.2/24","gateway":"198.19.0.1","interface":1}]}`)
	c, err := parse(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	if c.PrevResult == nil {
		t.Fatal("PrevResult not parsed")
	}
	res, err := current.NewResultFromResult(c.PrevResult)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Interfaces) != 2 || len(res.IPs) != 1 || res.IPs[0].Address.String() != "198.19.0.2/24" {
		t.Errorf("prevResult = %+v", res)
	}
}

// noPluginConf is a config struct that forgot to embed types.PluginConf.
type noPluginConf struct{ config.Common }

func TestParseRequiresPluginConf(t *testing.T) {
	err := config.Parse([]byte(`{"cniVersion":"1.0.0"}`), testType, &noPluginConf{})
	if err == nil || !strings.Contains(err.Error(), "PluginConf") {
		t.Fatalf("err = %v, want a programming error naming PluginConf", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		conf(``),
		conf(`,"stateDir":"/s","bpfRoot":"/b","logFile":"/l","logLevel":"warn","lockTimeout":"1s","widget":"x"`),
		conf(`,"prevResult":{"cniVersion":"1.0.0","ips":[{"address":"198.19.0.2/24","interface":0}],"interfaces":[{"name":"e"}]}`),
		conf(`,"prevResult":{"cniVersion":"0.4.0","ips":[{"version":"4","address":"198.19.0.2/24"}]}`),
		`{"cniVersion":"1.1.0","type":"` + testType + `","prevResult":null}`,
		`null`, `{}`, `[]`, `"x"`, `{"type":1}`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, stdin []byte) {
		c := &testConf{}
		err := config.Parse(stdin, testType, c)
		if err == nil {
			// Whatever was accepted must be usable as validated.
			if c.StateDir == "" || c.BPFRoot == "" || c.Timeout() <= 0 {
				t.Fatalf("accepted config without defaults: %+v", c.Common)
			}
			return
		}
		var e *types.Error
		if !errors.As(err, &e) {
			t.Fatalf("error %v (%T) is not a CNI error", err, err)
		}
	})
}
