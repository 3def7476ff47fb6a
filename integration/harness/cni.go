package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// cniTimeout bounds one CNI verb over a whole chain; it is long enough for
// parallel ADDs queueing on the node's store lock.
const cniTimeout = 30 * time.Second

// Chain is a conflist prepared for one node. Its verbs run through libcni
// with the node's netns as the calling thread's netns, as cnitool and
// container runtimes do.
type Chain struct {
	Node *Node
	File string // the conflist as written, for reruns by hand with cnitool
	List *libcni.NetworkConfigList
	cni  *libcni.CNIConfig
}

// Edit changes a conflist (decoded as JSON) before it is written.
type Edit func(list map[string]any)

// PluginKeys sets keys on every braid plugin of the list; a nil value
// deletes the key.
func PluginKeys(kv map[string]any) Edit {
	return func(list map[string]any) {
		for _, p := range braidPlugins(list) {
			for k, v := range kv {
				if v == nil {
					delete(p, k)
				} else {
					p[k] = v
				}
			}
		}
	}
}

// CNIVersion sets the list's cniVersion (GC and STATUS need 1.1.0).
func CNIVersion(v string) Edit {
	return func(list map[string]any) { list["cniVersion"] = v }
}

// braidPlugins are the list's plugins built from this repository (found in
// bin/), as opposed to reference plugins such as ptp.
func braidPlugins(list map[string]any) []map[string]any {
	repo, _ := Repo()
	var out []map[string]any
	plugins, _ := list["plugins"].([]any)
	for _, p := range plugins {
		m, ok := p.(map[string]any)
		typ, _ := m["type"].(string)
		if _, err := os.Stat(filepath.Join(binDir(repo), typ)); ok && typ != "" && err == nil {
			out = append(out, m)
		}
	}
	return out
}

// Conflist reads chain-configs/<file>, points every braid plugin at the
// node's stateDir, bpfRoot and logFile, applies edits, and writes the result
// under the node's directory.
func (n *Node) Conflist(t testing.TB, file string, edits ...Edit) *Chain {
	t.Helper()
	repo, err := Repo()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(repo, "chain-configs", file))
	if err != nil {
		t.Fatal(err)
	}
	var list map[string]any
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	PluginKeys(map[string]any{"stateDir": n.StateDir, "bpfRoot": n.BPFRoot, "logFile": n.LogFile})(list)
	for _, e := range edits {
		e(list)
	}
	out, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	confDir := filepath.Join(n.Dir, "conf")
	if err := os.MkdirAll(confDir, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(confDir)
	path := filepath.Join(confDir, fmt.Sprintf("%02d-%s", len(entries), file))
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	cl, err := libcni.ConfListFromBytes(out)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, p := range cl.Plugins {
		requireBinary(t, p.Network.Type)
	}
	return &Chain{
		Node: n,
		File: path,
		List: cl,
		// An explicit exec: libcni would set a default one lazily, which
		// races when pods are added in parallel.
		cni: libcni.NewCNIConfigWithCacheDir([]string{binDir(repo), toolsCNIDir(repo)}, filepath.Join(n.Dir, "cni-cache"),
			&invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}}),
	}
}

// do runs a libcni call on a thread inside the node's netns.
func (c *Chain) do(fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), cniTimeout)
	defer cancel()
	return c.Node.Do(func() error { return fn(ctx) })
}

// GC runs the chain's GC with valid as cni.dev/valid-attachments. libcni
// first DELs every attachment in its cache that is not valid; the plugins'
// GC then has to find the rest on its own.
func (c *Chain) GC(valid ...*Pod) error {
	args := &libcni.GCArgs{}
	for _, p := range valid {
		args.ValidAttachments = append(args.ValidAttachments, types.GCAttachment{ContainerID: p.ContainerID, IfName: p.IfName})
	}
	return c.do(func(ctx context.Context) error { return c.cni.GCNetworkList(ctx, c.List, args) })
}

// Status runs the chain's STATUS.
func (c *Chain) Status() error {
	return c.do(func(ctx context.Context) error { return c.cni.GetStatusNetworkList(ctx, c.List) })
}

// Pod is a pod sandbox: a network namespace, attached by its Chain.
type Pod struct {
	*NS
	Name        string
	ContainerID string
	IfName      string
	Chain       *Chain
	// Args are the CNI_ARGS the runtime passes (libcni joins them as
	// K=V;K=V), e.g. {"K8S_POD_NAMESPACE", "default"}; set before Add.
	Args [][2]string
	// Set by a successful Add.
	IP     netip.Addr
	Result *current.Result
}

// NewPod creates the pod's netns "<topology>-<node>-<name>" with lo up, as
// a runtime does before calling the chain; the container ID is the same.
// Call it from the test's goroutine.
func (c *Chain) NewPod(t testing.TB, name string) *Pod {
	t.Helper()
	id := c.Node.topo.Name + "-" + c.Node.Name + "-" + name
	ns, err := createNS(id)
	if err == nil {
		err = ns.Do(func() error { return linksUp("lo") })
	}
	if err != nil {
		t.Fatal(err)
	}
	return &Pod{NS: ns, Name: name, ContainerID: id, IfName: "eth0", Chain: c}
}

// AddPod is NewPod and a successful Add.
func (c *Chain) AddPod(t testing.TB, name string) *Pod {
	t.Helper()
	p := c.NewPod(t, name)
	if err := p.Add(); err != nil {
		t.Fatalf("ADD %s: %v", name, err)
	}
	return p
}

func (p *Pod) runtimeConf() *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: p.ContainerID, NetNS: p.Path, IfName: p.IfName, Args: p.Args}
}

// Add runs ADD and records the result and the pod's IPv4 address. Safe to
// call concurrently for different pods.
func (p *Pod) Add() error {
	var res types.Result
	err := p.Chain.do(func(ctx context.Context) (err error) {
		res, err = p.Chain.cni.AddNetworkList(ctx, p.Chain.List, p.runtimeConf())
		return err
	})
	if err != nil {
		return err
	}
	if p.Result, err = current.NewResultFromResult(res); err != nil {
		return err
	}
	for _, ipc := range p.Result.IPs {
		if a, ok := netip.AddrFromSlice(ipc.Address.IP.To4()); ok {
			p.IP = a
			return nil
		}
	}
	return fmt.Errorf("ADD %s: result has no IPv4 address: %v", p.Name, p.Result)
}

// Check runs CHECK against the cached result of ADD.
func (p *Pod) Check() error {
	return p.Chain.do(func(ctx context.Context) error {
		return p.Chain.cni.CheckNetworkList(ctx, p.Chain.List, p.runtimeConf())
	})
}

// Del runs DEL.
func (p *Pod) Del() error {
	return p.Chain.do(func(ctx context.Context) error {
		return p.Chain.cni.DelNetworkList(ctx, p.Chain.List, p.runtimeConf())
	})
}

// ForgetCache drops libcni's cached result for the pod, as a runtime that
// lost its state would, so only the plugins' own GC can find the pod.
func (p *Pod) ForgetCache() error {
	// libcni's cache layout: <cacheDir>/results/<network>-<containerID>-<ifname>.
	path := filepath.Join(p.Chain.Node.Dir, "cni-cache", "results",
		p.Chain.List.Name+"-"+p.ContainerID+"-"+p.IfName)
	return os.Remove(path)
}

// RemoveNetns deletes the pod's netns, as when a sandbox dies before DEL.
func (p *Pod) RemoveNetns() error { return deleteNS(p.Path) }

// Exec runs one plugin of the chain directly with raw stdin, for input
// libcni would refuse to send, such as malformed JSON.
func (p *Pod) Exec(plugin, verb string, stdin []byte) error {
	repo, err := Repo()
	if err != nil {
		return err
	}
	paths := []string{binDir(repo), toolsCNIDir(repo)}
	path, err := invoke.FindInPath(plugin, paths)
	if err != nil {
		return err
	}
	args := &invoke.Args{Command: verb, ContainerID: p.ContainerID, NetNS: p.Path, IfName: p.IfName,
		Path: strings.Join(paths, ":")}
	return p.Chain.do(func(ctx context.Context) error {
		_, err := invoke.ExecPluginWithResult(ctx, path, stdin, args, nil)
		return err
	})
}

// HostIf is the pod's host-side interface from the ADD result (the one
// without a sandbox).
func (p *Pod) HostIf() (name string, mac net.HardwareAddr) {
	return p.iface(false)
}

// MAC is the pod interface's MAC from the ADD result.
func (p *Pod) MAC() net.HardwareAddr {
	_, mac := p.iface(true)
	return mac
}

func (p *Pod) iface(inSandbox bool) (string, net.HardwareAddr) {
	if p.Result == nil {
		return "", nil
	}
	for _, i := range p.Result.Interfaces {
		if (i.Sandbox != "") == inSandbox {
			mac, _ := net.ParseMAC(i.Mac)
			return i.Name, mac
		}
	}
	return "", nil
}

// RequireCNIError fails t unless err is a CNI error with code whose message
// contains every one of substrs.
func RequireCNIError(t testing.TB, err error, code uint, substrs ...string) {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("want CNI error %d, got %v", code, err)
	}
	if e.Code != code {
		t.Fatalf("want CNI error code %d, got %d: %s", code, e.Code, e.Msg)
	}
	for _, s := range substrs {
		if !strings.Contains(e.Msg+" "+e.Details, s) {
			t.Fatalf("CNI error %d %q does not mention %q", code, e.Msg, s)
		}
	}
}
