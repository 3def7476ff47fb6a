package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/braid-cni/braid/core/datapathrpc"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
)

// hosted is one plugin binary run as a go-plugin server, restarted when it
// dies. Its calls fail while it is down; nothing else does.
type hosted struct {
	name string // the plugin's type in the conflist
	bin  string
	conf []byte // its network config, sent with every call
	// Where its config says the node store and pins are.
	stateDir, bpfRoot string
	log               *slog.Logger

	mu     sync.Mutex
	client *goplugin.Client
	rpc    datapathrpc.DatapathClient
	pid    int
	info   string // the last Info seen: version and program count
}

// setInfo records the server's Info summary and reports whether it changed.
func (h *hosted) setInfo(info string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := h.info != info
	h.info = info
	return changed
}

// errDown is returned by calls to a plugin that is being restarted.
var errDown = errors.New("plugin is not running")

// start launches the binary and completes the handshake. A binary that is
// not a braid plugin (ptp, say) fails here: it does not know the handshake.
func (h *hosted) start() error {
	cmd := exec.Command(h.bin)
	// A runtime's CNI_* variables would make the binary a CNI plugin. (No
	// parent-death signal: it follows the starting thread, not the agent;
	// the server watches its parent instead, see core/plugin.)
	cmd.Env = withoutCNIEnv(os.Environ())
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
	h.client, h.rpc = client, raw.(datapathrpc.DatapathClient)
	if rc := client.ReattachConfig(); rc != nil {
		h.pid = rc.Pid
	}
	h.mu.Unlock()
	return nil
}

// up reports whether the plugin server is running.
func (h *hosted) up() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.client != nil && !h.client.Exited()
}

// Pid is the plugin server's process id (0 while down).
func (h *hosted) Pid() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.client == nil || h.client.Exited() {
		return 0
	}
	return h.pid
}

// call runs fn against the plugin's client with a deadline.
func (h *hosted) call(ctx context.Context, timeout time.Duration, fn func(context.Context, datapathrpc.DatapathClient) error) error {
	h.mu.Lock()
	rpc, client := h.rpc, h.client
	h.mu.Unlock()
	if client == nil || client.Exited() {
		return errDown
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return fn(ctx, rpc)
}

func (h *hosted) request() *datapathrpc.Request { return &datapathrpc.Request{Config: h.conf} }

// supervise restarts the plugin whenever it exits, with a backoff that
// doubles up to maxBackoff (and starts over once a server has run for a
// minute), until ctx ends; restarted is called after each restart.
func (h *hosted) supervise(ctx context.Context, restarted func(*hosted)) {
	const minBackoff, maxBackoff = 250 * time.Millisecond, 30 * time.Second
	backoff := minBackoff
	started := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if h.up() {
			continue
		}
		if time.Since(started) > time.Minute {
			backoff = minBackoff
		}
		h.log.Error("plugin server exited; restarting", "plugin", h.name, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
		started = time.Now()
		if err := h.start(); err != nil {
			h.log.Error("plugin restart failed", "plugin", h.name, "err", err)
			continue
		}
		h.log.Info("plugin restarted", "plugin", h.name, "pid", h.Pid())
		restarted(h)
	}
}

// stop ends the plugin server. Servers hold no datapath state (it is all
// pinned), so this takes nothing down.
func (h *hosted) stop() {
	h.mu.Lock()
	client := h.client
	h.mu.Unlock()
	if client != nil {
		client.Kill()
	}
}

func withoutCNIEnv(env []string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, "CNI_") {
			out = append(out, e)
		}
	}
	return out
}
