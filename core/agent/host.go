package agent

import (
	"context"
	"debug/buildinfo"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/braid-cni/braid/core/backoff"
	"github.com/braid-cni/braid/core/conflist"
	"github.com/braid-cni/braid/core/datapathrpc"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
)

// process is a running plugin server: its go-plugin client (a fake in tests).
type process interface {
	Exited() bool
	Kill()
}

// hosted is one plugin binary run as a go-plugin server, restarted when it
// dies or its binary is replaced. Its calls fail while it is down; nothing
// else does.
type hosted struct {
	name string // the plugin's type in the conflist
	bin  string
	conf []byte // its network config, sent with every call
	// Where its config says the node store and pins are.
	stateDir, bpfRoot string
	// socketDir is where go-plugin makes the server's socket (empty: the
	// system's temporary folder).
	socketDir string
	log       *slog.Logger

	// calls is held for reading by every call and for writing while the
	// server is replaced, so that no call reaches a server being stopped.
	calls sync.RWMutex

	mu     sync.Mutex
	proc   process
	rpc    datapathrpc.DatapathClient
	pid    int
	info   string   // the last Info seen: version and program count
	binary binaryID // of the file the running server was started from
	// A different file at bin, seen since pendingSince, not yet settled.
	pending      binaryID
	pendingSince time.Time
}

// setInfo records the server's Info summary and reports whether it changed.
func (h *hosted) setInfo(info string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := h.info != info
	h.info = info
	return changed
}

var (
	// errDown is returned by calls to a plugin that is being restarted.
	errDown = errors.New("plugin is not running")
	// errReplaced is returned by calls to a server whose binary was
	// replaced: it may know an older map layout, and its Reconcile would
	// migrate the new build's maps back; its replacement is due.
	errReplaced = errors.New("plugin binary replaced; its server is restarting")
)

// start launches the binary and completes the handshake. A binary that is
// not a braid plugin (ptp, say) fails here: it does not know the handshake.
func (h *hosted) start() error {
	// Before the exec: a file replaced in between is seen as changed later.
	id, err := statBinary(h.bin)
	if err != nil {
		return err
	}
	cmd := exec.Command(h.bin)
	// A runtime's CNI_* variables would make the binary a CNI plugin. (No
	// parent-death signal: it follows the starting thread, not the agent;
	// the server watches its parent instead, see core/plugin.)
	cmd.Env = conflist.Environ()
	if h.socketDir != "" {
		// go-plugin's server makes its socket there (it chmods nothing).
		cmd.Env = append(cmd.Env, goplugin.EnvUnixSocketDir+"="+h.socketDir)
	}
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  datapathrpc.Handshake,
		Plugins:          datapathrpc.Plugins,
		Cmd:              cmd,
		SkipHostEnv:      true,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     10 * time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name: "plugin." + h.name, Level: hclog.Warn, Output: os.Stderr,
		}),
	})
	proto, err := client.Client()
	if err != nil {
		client.Kill()
		return err
	}
	raw, err := proto.Dispense(datapathrpc.Name)
	if err != nil {
		client.Kill()
		return err
	}
	h.mu.Lock()
	h.proc, h.rpc, h.binary, h.pending = client, raw.(datapathrpc.DatapathClient), id, binaryID{}
	if rc := client.ReattachConfig(); rc != nil {
		h.pid = rc.Pid
	}
	h.mu.Unlock()
	return nil
}

// braidModule is the module every braid plugin is built with.
const braidModule = "github.com/braid-cni/braid"

// braidBuild reports whether the binary at path was built with braid's
// module, as every braid plugin is: one that does not start is failing and
// is retried, where another project's binary that refuses the handshake
// (ptp exits printing its usage) is simply not a braid plugin.
func braidBuild(path string) bool {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return false // not a Go binary
	}
	if info.Main.Path == braidModule {
		return true
	}
	for _, d := range info.Deps {
		if d.Path == braidModule {
			return true
		}
	}
	return false
}

// up reports whether the plugin server is running.
func (h *hosted) up() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.proc != nil && !h.proc.Exited()
}

// Pid is the plugin server's process id (0 while down).
func (h *hosted) Pid() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc == nil || h.proc.Exited() {
		return 0
	}
	return h.pid
}

// call runs fn against the plugin's client with a deadline.
func (h *hosted) call(ctx context.Context, timeout time.Duration, fn func(context.Context, datapathrpc.DatapathClient) error) error {
	h.calls.RLock()
	defer h.calls.RUnlock()
	h.mu.Lock()
	rpc, proc, running := h.rpc, h.proc, h.binary
	h.mu.Unlock()
	if proc == nil || proc.Exited() {
		return errDown
	}
	if id, err := statBinary(h.bin); err == nil && id != running {
		return errReplaced
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return fn(ctx, rpc)
}

func (h *hosted) request() *datapathrpc.Request { return &datapathrpc.Request{Config: h.conf} }

// The supervisor's backoff: doubling from minBackoff to maxBackoff, back to
// the start once a server ran for stableRun.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 30 * time.Second
	stableRun  = time.Minute
)

// supervise restarts the plugin server whenever it is down (it died, or
// never started) with a backoff, and at once when its binary was replaced,
// until ctx ends; restarted is called after each restart.
func (h *hosted) supervise(ctx context.Context, restarted func(*hosted)) {
	wait := backoff.Backoff{Min: minBackoff, Max: maxBackoff, Stable: stableRun}
	started := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		switch {
		case h.up() && h.binaryReplaced(time.Now()):
			h.log.Info("plugin binary replaced; restarting its server", "plugin", h.name, "bin", h.bin, "pid", h.Pid())
			started = time.Now()
			if err := h.replace(); err != nil {
				h.log.Error("plugin restart failed", "plugin", h.name, "err", err)
				continue
			}
		case h.up():
			continue
		default:
			d := wait.Next(time.Since(started))
			h.log.Error("plugin server is down; restarting", "plugin", h.name, "in", d)
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
			started = time.Now()
			if err := h.start(); err != nil {
				h.log.Error("plugin restart failed", "plugin", h.name, "err", err)
				continue
			}
		}
		h.log.Info("plugin restarted", "plugin", h.name, "pid", h.Pid())
		restarted(h)
	}
}

// replace stops the server and starts the binary anew, holding calls back
// meanwhile: they go to the new server, or fail if it does not start.
func (h *hosted) replace() error {
	h.calls.Lock()
	defer h.calls.Unlock()
	h.stop()
	return h.start()
}

// binaryID tells one file at a path from another: a new file (rename over
// it, as package managers and install(1) do) or one rewritten in place.
type binaryID struct {
	dev, ino uint64
	size     int64
	mtime    int64 // ns
}

func statBinary(path string) (binaryID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return binaryID{}, err
	}
	id := binaryID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = st.Dev, st.Ino
	}
	return id, nil
}

// settle is how long a replaced binary must stay the same before its new
// server starts: an installer may still be writing it.
const settle = time.Second

// binaryReplaced reports whether the file at bin is not the one the running
// server was started from, and has stayed the same for settle. A file that
// is gone is no reason to stop the server.
func (h *hosted) binaryReplaced(now time.Time) bool {
	id, err := statBinary(h.bin)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil || id == h.binary {
		h.pending = binaryID{}
		return false
	}
	if id != h.pending {
		h.pending, h.pendingSince = id, now
		return false
	}
	return now.Sub(h.pendingSince) >= settle
}

// stop ends the plugin server. Servers hold no datapath state (it is all
// pinned), so this takes nothing down.
func (h *hosted) stop() {
	h.mu.Lock()
	proc := h.proc
	h.mu.Unlock()
	if proc != nil {
		proc.Kill()
	}
}
