package vethebpf

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestStatus(t *testing.T) {
	n, c := setup(t, harness.CNIVersion("1.1.0"))
	if err := c.Status(); err != nil {
		t.Errorf("STATUS on an initialized node: %v", err)
	}
	noBPFFS := n.Conflist(t, conflist, harness.CNIVersion("1.1.0"), harness.PluginKeys(map[string]any{"bpfRoot": t.TempDir()}))
	harness.RequireCNIError(t, noBPFFS.Status(), types.ErrPluginNotAvailable, "bpffs is not mounted")
	noInit := n.Conflist(t, conflist, harness.CNIVersion("1.1.0"), harness.PluginKeys(map[string]any{"stateDir": t.TempDir()}))
	harness.RequireCNIError(t, noInit.Status(), types.ErrPluginNotAvailable, "not initialized")

	inNetns(t, n.NS, func() error {
		l, err := netlink.LinkByName(harness.NodeDevice)
		if err != nil {
			return err
		}
		return netlink.LinkDel(l)
	})
	harness.RequireCNIError(t, c.Status(), types.ErrPluginNotAvailable, harness.NodeDevice)
}

// TestConfigErrors checks that each class of bad input gets its CNI error
// code and names what is wrong, and that a failed ADD leaves nothing behind.
func TestConfigErrors(t *testing.T) {
	n, c := setup(t)
	for i, tc := range []struct {
		name    string
		keys    map[string]any
		code    uint
		mention string
	}{
		{"unknown key", map[string]any{"stateDri": "/tmp"}, types.ErrInvalidNetworkConfig, `"stateDri"`},
		{"wrong type", map[string]any{"mtu": "1400"}, types.ErrDecodingFailure, "mtu"},
		{"wrong type of a shared key", map[string]any{"lockTimeout": 5}, types.ErrDecodingFailure, "lockTimeout"},
		{"lockTimeout not a duration", map[string]any{"lockTimeout": "soon"}, types.ErrInvalidNetworkConfig, `"lockTimeout"`},
		{"lockTimeout not positive", map[string]any{"lockTimeout": "0s"}, types.ErrInvalidNetworkConfig, `"lockTimeout"`},
		{"mtu too small", map[string]any{"mtu": 100}, types.ErrInvalidNetworkConfig, `"mtu"`},
		{"mtu too large", map[string]any{"mtu": 70000}, types.ErrInvalidNetworkConfig, `"mtu"`},
		{"relative stateDir", map[string]any{"stateDir": "state"}, types.ErrInvalidNetworkConfig, `"stateDir"`},
		{"uninitialized node", map[string]any{"stateDir": t.TempDir()}, types.ErrPluginNotAvailable, "not initialized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := n.Conflist(t, conflist, harness.PluginKeys(tc.keys))
			p := bad.NewPod(t, fmt.Sprintf("c%d", i))
			harness.RequireCNIError(t, p.Add(), tc.code, tc.mention)
		})
	}
	for i, tc := range []struct{ name, conf, mention string }{
		{"another plugin's type", `{"cniVersion": "1.0.0", "name": "braid", "type": "vxlan-tunnel"}`, `"type"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.NewPod(t, fmt.Sprintf("raw%d", i)).Exec(plugin, "ADD", []byte(tc.conf))
			harness.RequireCNIError(t, err, types.ErrInvalidNetworkConfig, tc.mention)
		})
	}
	// A config without cniVersion is 0.1.0 to the spec, which no braid
	// plugin speaks: both get the spec's code 1 and the versions it does.
	for i, conf := range []string{`{"cniVersion": "9.9.9", "name": "braid", "type": "veth-ebpf"}`, `{"name": "braid", "type": "veth-ebpf"}`} {
		t.Run("unsupported cniVersion", func(t *testing.T) {
			err := c.NewPod(t, fmt.Sprintf("ver%d", i)).Exec(plugin, "ADD", []byte(conf))
			harness.RequireCNIError(t, err, types.ErrIncompatibleCNIVersion, "1.1.0")
		})
	}
	t.Run("node init with a bad CIDR or address", func(t *testing.T) {
		for _, args := range [][]string{
			{"--pod-cidr", "198.19.9.0/33"}, {"--pod-cidr", "198.19.9.1/24"}, {"--pod-cidr", "fd00::/64"},
			{"--node-ip", "198.18.0.300"}, {"--node-ip", ""},
		} {
			flags := map[string]string{"--name": "x", "--node-ip": "198.18.0.9", "--pod-cidr": "198.19.9.0/24", "--device": harness.NodeDevice}
			flags[args[0]] = args[1]
			argv := []string{"node", "init"}
			for k, v := range flags {
				argv = append(argv, k, v)
			}
			// The one-line reason is the error's last part (stderr).
			if _, err := n.TryBraid(t, argv...); err == nil || !strings.Contains(err.Error(), "braid: "+args[0]) {
				t.Errorf("braid node init %s %q: %v; want a refusal naming %s", args[0], args[1], err, args[0])
			}
		}
	})
	t.Run("malformed JSON", func(t *testing.T) {
		p := c.NewPod(t, "json")
		err := p.Exec(plugin, "ADD", []byte(`{"cniVersion": "1.0.0", "name": "braid", "type": "veth-ebpf",`))
		harness.RequireCNIError(t, err, types.ErrDecodingFailure)
	})
	t.Run("store locked by another process", func(t *testing.T) {
		locked := n.Conflist(t, conflist, harness.PluginKeys(map[string]any{"lockTimeout": "200ms"}))
		p := locked.NewPod(t, "locked")
		// bbolt locks the file with flock; hold it the same way.
		f, err := os.OpenFile(filepath.Join(n.StateDir, "braid.db"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		harness.RequireCNIError(t, p.Add(), types.ErrTryAgainLater, "locked")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("ADD waited %s for the lock, configured 200ms", d)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_UN); err != nil {
			t.Fatal(err)
		}
		if err := p.Add(); err != nil {
			t.Fatalf("ADD once the lock is free: %v", err)
		}
		if err := p.Del(); err != nil {
			t.Fatal(err)
		}
	})
	n.RequireClean(t)
}
