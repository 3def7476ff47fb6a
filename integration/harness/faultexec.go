package harness

// Fault injection into CNI calls: a chain whose plugin processes can be
// killed with SIGKILL part-way through a verb, as the OOM killer, a runtime
// that gives up on a slow call, or a node losing power mid-call would.
// libcni execs the plugins through an invoke.Exec; this one starts the
// chosen plugin itself and kills it after a delay.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// PluginKiller decides which plugin process dies, and when. Arm it before a
// verb; the next process of that plugin running that verb gets SIGKILL
// after the delay, unless it finishes first. It also times every plugin
// process that runs through it, so a test can spread its kills over a
// verb's real duration. Safe for concurrent use.
type PluginKiller struct {
	mu        sync.Mutex
	plugin    string // armed: base name of the binary
	verb      string // and CNI_COMMAND
	after     time.Duration
	last      KillOutcome
	durations map[string][]time.Duration // "plugin VERB" -> runs that were not killed
}

// KillOutcome is what happened to the process an armed killer aimed at.
type KillOutcome struct {
	Plugin, Verb string
	After        time.Duration // the delay it was armed with
	Ran          bool          // a matching process was started
	Killed       bool          // and died of the SIGKILL (false: it finished first)
	RanFor       time.Duration // how long it ran
}

// Arm makes the next `plugin` process running verb die after the delay.
func (k *PluginKiller) Arm(plugin, verb string, after time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.plugin, k.verb, k.after = plugin, verb, after
	k.last = KillOutcome{Plugin: plugin, Verb: verb, After: after}
}

// Disarm cancels a kill that has not happened, and returns what happened
// to the armed target.
func (k *PluginKiller) Disarm() KillOutcome {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.plugin = ""
	return k.last
}

// Median is the median duration of plugin's unkilled runs of verb (0 if
// none ran yet).
func (k *PluginKiller) Median(plugin, verb string) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	d := slices.Clone(k.durations[plugin+" "+verb])
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// take claims the armed kill for a process of plugin running verb.
func (k *PluginKiller) take(plugin, verb string) (time.Duration, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.plugin == "" || k.plugin != plugin || k.verb != verb {
		return 0, false
	}
	k.plugin = ""
	k.last.Ran = true
	return k.after, true
}

func (k *PluginKiller) record(plugin, verb string, d time.Duration, killed bool, armed bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if armed {
		k.last.Killed, k.last.RanFor = killed, d
	}
	if !killed {
		if k.durations == nil {
			k.durations = map[string][]time.Duration{}
		}
		k.durations[plugin+" "+verb] = append(k.durations[plugin+" "+verb], d)
	}
}

// WithKiller is a copy of the chain (same conflist, plugins and libcni
// cache) whose plugin processes go through k.
func (c *Chain) WithKiller(k *PluginKiller) *Chain {
	cp := *c
	cp.cni = libcni.NewCNIConfigWithCacheDir(slices.Clone(c.cni.Path), filepath.Join(c.Node.Dir, "cni-cache"),
		&killExec{k: k})
	return &cp
}

// killExec is libcni's invoke.Exec with processes started here, so that
// they can be killed.
type killExec struct {
	k *PluginKiller
	version.PluginDecoder
}

func (e *killExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

// ExecPlugin runs on the thread libcni was called on, which sits in the
// node's netns: the child inherits it, as with invoke.RawExec.
func (e *killExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	plugin, verb := filepath.Base(pluginPath), cniCommand(environ)
	after, armed := e.k.take(plugin, verb)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, pluginPath)
	cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = environ, bytes.NewReader(stdin), &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if armed {
		timer := time.AfterFunc(after, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
		defer timer.Stop()
	}
	err := cmd.Wait()
	ran := time.Since(start)
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	killed := ws.Signaled() && ws.Signal() == syscall.SIGKILL
	e.k.record(plugin, verb, ran, killed, armed)
	if killed {
		return nil, fmt.Errorf("%s %s killed with SIGKILL after %s", plugin, verb, ran.Round(time.Microsecond))
	}
	if stderr.Len() > 0 {
		_, _ = stderr.WriteTo(os.Stderr)
	}
	if err != nil {
		// A plugin reports failure as a CNI error on stdout.
		var cniErr types.Error
		if json.Unmarshal(stdout.Bytes(), &cniErr) == nil && cniErr.Code != 0 {
			return nil, &cniErr
		}
		return nil, fmt.Errorf("%s %s: %w: %s", plugin, verb, err, strings.TrimSpace(stdout.String()))
	}
	return stdout.Bytes(), nil
}

func cniCommand(environ []string) string {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "CNI_COMMAND="); ok {
			return v
		}
	}
	return ""
}

// TryNewPod is NewPod for goroutines other than the test's: it returns the
// error instead of failing the test.
func (c *Chain) TryNewPod(name string) (*Pod, error) {
	id := c.Node.topo.Name + "-" + c.Node.Name + "-" + name
	ns, err := createNS(id)
	if err == nil {
		if err = ns.Do(func() error { return linksUp("lo") }); err != nil {
			_ = deleteNS(ns.Path)
		}
	}
	if err != nil {
		return nil, err
	}
	return &Pod{NS: ns, Name: name, ContainerID: id, IfName: "eth0", Chain: c}, nil
}
