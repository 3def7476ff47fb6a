// Package agent is `braid agent`: it hosts the node's braid plugins as
// go-plugin servers (core/datapathrpc), keeps the node store in line with
// the cluster datastore, and drives the plugins' Reconcile, GC and Status.
//
// The agent knows nothing about any one plugin. It holds no datapath state
// either: everything the plugins make is pinned or in the kernel, so the
// datapath forwards while the agent is stopped, and nothing is torn down
// when it exits.
package agent

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/braid-cni/braid/core/bpffs"
	"github.com/braid-cni/braid/core/datapathrpc"
	"github.com/braid-cni/braid/core/datastore"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is an agent's configuration.
type Config struct {
	// Node is this node. With the local datastore a zero Node means "as
	// `braid node init` recorded it". With a Source, the Source gives the
	// node's identity (its Self); a NodeIP or Device set here is the
	// node's, whatever the Source says (--node-ip, --device).
	Node     store.Node
	Conflist string
	CNIPath  []string
	StateDir string
	BPFRoot  string
	// Source is the cluster datastore the node follows (etcd, Kubernetes);
	// nil for the local datastore, where the node store alone is the
	// cluster, edited with the CLI.
	Source         datastore.Source
	MetricsAddress string // empty: no HTTP server
	ResyncInterval time.Duration
	GCInterval     time.Duration
	StatusInterval time.Duration
	Log            *slog.Logger
}

// Agent is a running agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	plugins []*hosted
	metrics *metrics
	trigger chan struct{} // a reconcile of every plugin is due
	views   chan datastore.View
	// socketDir holds the plugin servers' sockets, private to root.
	socketDir string

	mu       sync.Mutex
	problems map[string][]string // last problems, by plugin or "store"
}

// storeTimeout bounds waiting for the node store, which CNI calls hold for
// the length of an ADD.
const storeTimeout = 10 * time.Second

// New prepares the node (bpffs, the shared endpoint map, the identity with
// the local datastore) and launches the conflist's braid plugins.
func New(cfg Config) (*Agent, error) {
	a := &Agent{cfg: cfg, log: cfg.Log, metrics: newMetrics(), trigger: make(chan struct{}, 1),
		views: make(chan datastore.View, 1), problems: map[string][]string{}}
	if err := bpffs.Ensure(cfg.BPFRoot); err != nil {
		return nil, err
	}
	eps, err := maps.OpenEndpoints(cfg.BPFRoot)
	if err != nil {
		return nil, err
	}
	eps.Close()
	if err := a.prepareIdentity(); err != nil {
		return nil, err
	}
	plugins, err := readConflist(cfg.Conflist, cfg.CNIPath)
	if err != nil {
		return nil, err
	}
	// The servers' sockets: go-plugin makes them in the temporary folder
	// unless told otherwise, at whatever mode the umask leaves.
	if a.socketDir, err = os.MkdirTemp("", "braid-agent-"); err != nil {
		return nil, err
	}
	for _, h := range plugins {
		h.log, h.socketDir = a.log, a.socketDir
		if err := a.host(h); err != nil {
			a.stop()
			return nil, err
		}
	}
	if len(a.plugins) == 0 {
		a.stop()
		return nil, fmt.Errorf("conflist %s has no braid plugin", cfg.Conflist)
	}
	return a, nil
}

// host starts a plugin of the conflist and adds it to the agent's. A braid
// plugin whose server does not start is added all the same: the supervisor
// retries it and it is reported down meanwhile. Any other binary is left to
// the runtime.
func (a *Agent) host(h *hosted) error {
	err := h.start()
	if err != nil && !braidBuild(h.bin) {
		a.log.Info("skipping plugin: not a braid plugin (it refuses the handshake)", "plugin", h.name, "err", err)
		return nil
	}
	// The agent writes the store at StateDir: a plugin reading another
	// would never see the cluster.
	if h.stateDir != a.cfg.StateDir || h.bpfRoot != a.cfg.BPFRoot {
		h.stop()
		return fmt.Errorf("plugin %s in %s has stateDir %s and bpfRoot %s, the agent %s and %s: make them the same",
			h.name, a.cfg.Conflist, h.stateDir, h.bpfRoot, a.cfg.StateDir, a.cfg.BPFRoot)
	}
	if err != nil {
		a.log.Error("plugin server did not start; retrying with backoff", "plugin", h.name, "err", err)
	} else {
		a.log.Info("plugin started", "plugin", h.name, "pid", h.Pid())
	}
	a.plugins = append(a.plugins, h)
	for _, c := range []*prometheus.CounterVec{a.metrics.pluginRestarts, a.metrics.reconcileErrors, a.metrics.gcErrors} {
		c.WithLabelValues(h.name).Add(0)
	}
	return nil
}

// prepareIdentity reads the node's identity from the store. A Source that
// resumes from it (etcd asks for the same pod CIDR) is given it; the
// Source's views bring the identity itself. With the local datastore it
// records cfg.Node when given.
func (a *Agent) prepareIdentity() error {
	var have store.Node
	var haveErr error
	err := a.view(func(tx *store.Tx) error { have, haveErr = tx.Node(); return nil })
	if err != nil {
		return err
	}
	if src := a.cfg.Source; src != nil {
		if r, ok := src.(datastore.Resumer); ok && haveErr == nil {
			r.Resume(have)
		}
		return nil
	}
	if a.cfg.Node.Name == "" {
		return haveErr // the identity `braid node init` recorded, or why there is none
	}
	return a.update(func(tx *store.Tx) error { return tx.SetIdentity(a.cfg.Node) })
}

func (a *Agent) view(fn func(*store.Tx) error) error {
	st, err := store.Open(a.cfg.StateDir, storeTimeout)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.View(fn)
}

func (a *Agent) update(fn func(*store.Tx) error) error {
	st, err := store.Open(a.cfg.StateDir, storeTimeout)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Update(fn)
}

// Run drives the plugins until ctx ends, then stops their servers, and
// nothing else: the datapath stays as it is.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	goRun := func(fn func()) { wg.Add(1); go func() { defer wg.Done(); fn() }() }

	if a.cfg.MetricsAddress != "" {
		l, err := net.Listen("tcp", a.cfg.MetricsAddress)
		if err != nil {
			return fmt.Errorf("metrics address: %w", err)
		}
		srv := &http.Server{Handler: a.metrics.handler(a.health), ReadHeaderTimeout: 5 * time.Second}
		goRun(func() { _ = srv.Serve(l) })
		goRun(func() { <-ctx.Done(); _ = srv.Close() })
	}
	for _, h := range a.plugins {
		goRun(func() {
			h.supervise(ctx, func(h *hosted) {
				a.info(ctx, h) // before the count: a scrape that sees the restart sees its Info
				a.metrics.pluginRestarts.WithLabelValues(h.name).Inc()
				a.kick()
			})
		})
	}
	if src := a.cfg.Source; src != nil {
		goRun(func() { src.Run(ctx, a.offer) })
		goRun(func() { a.applyViews(ctx) })
	} else {
		a.metrics.datastoreUp.Set(1)
		goRun(func() { a.watchLocal(ctx) })
	}
	goRun(func() { a.loop(ctx) })
	<-ctx.Done()
	wg.Wait()
	a.stop()
	return nil
}

// stop ends the plugin servers and removes their sockets' folder.
func (a *Agent) stop() {
	for _, h := range a.plugins {
		h.stop()
	}
	if a.socketDir != "" {
		_ = os.RemoveAll(a.socketDir)
	}
}

// kick asks for a reconcile of every plugin; kicks while one is pending
// fold into it.
func (a *Agent) kick() {
	select {
	case a.trigger <- struct{}{}:
	default:
	}
}

// offer hands a view from the Source to applyViews, replacing one not yet applied:
// only the newest matters.
func (a *Agent) offer(v datastore.View) {
	for {
		select {
		case a.views <- v:
			return
		default:
		}
		select {
		case <-a.views:
		default:
		}
	}
}

// applyViews writes each view into the node store and kicks a reconcile.
// The writer is its own goroutine so that a store held by a long CNI ADD
// never stalls the Source (etcd's session and its lease keepalive).
func (a *Agent) applyViews(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case v := <-a.views:
			v.Self = a.fillSelf(v.Self)
			if err := v.Self.Validate(); err != nil {
				// Retrying cannot help: the next view may.
				a.log.Error("the datastore gives this node an unusable identity", "err", err)
				a.setProblems("store", []string{"this node: " + err.Error()})
				continue
			}
			if err := a.apply(v); err != nil {
				a.log.Error("cannot apply the cluster to the node store", "err", err)
				a.setProblems("store", []string{err.Error()})
				// Try again later: a newer view or the resync brings it back.
				time.AfterFunc(time.Second, func() { a.offerIfEmpty(v) })
				continue
			}
			a.kick()
		}
	}
}

// fillSelf is the Source's identity of this node with what the agent was
// told (--node-ip, --device) in place of the Source's.
func (a *Agent) fillSelf(self store.Node) store.Node {
	if a.cfg.Node.NodeIP.IsValid() {
		self.NodeIP = a.cfg.Node.NodeIP
	}
	if a.cfg.Node.Device != "" {
		self.Device = a.cfg.Node.Device
	}
	return self
}

func (a *Agent) offerIfEmpty(v datastore.View) {
	select {
	case a.views <- v:
	default:
	}
}

func (a *Agent) apply(v datastore.View) error {
	var peers, svcs store.SyncResult
	err := a.update(func(tx *store.Tx) (err error) {
		if err := tx.SetIdentity(v.Self); err != nil {
			return err
		}
		if peers, err = tx.SyncPeers(v.Peers); err != nil {
			return err
		}
		svcs, err = tx.SyncServices(v.Services)
		return err
	})
	if err != nil {
		return err
	}
	problems := append(append(append([]string{}, v.Problems...), peers.Skipped...), svcs.Skipped...)
	for _, p := range problems {
		a.log.Warn("datastore entry refused", "problem", p)
	}
	a.setProblems("store", problems)
	a.metrics.skipped.Set(float64(len(problems)))
	a.metrics.peers.Set(float64(len(v.Peers) - len(peers.Skipped)))
	a.metrics.services.Set(float64(len(v.Services) - len(svcs.Skipped)))
	if peers.Changed+svcs.Changed > 0 {
		a.log.Info("node store updated", "peers", len(v.Peers), "services", len(v.Services),
			"changed", peers.Changed+svcs.Changed)
	}
	return nil
}

// watchLocal is the local datastore: the node store alone, changed by the
// braid CLI. A change (seen by polling, as bbolt has no notifications) is
// applied within a second.
func (a *Agent) watchLocal(ctx context.Context) {
	var last [32]byte
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var sum [32]byte
		err := a.view(func(tx *store.Tx) error {
			node, _ := tx.Node()
			peers, err := tx.Peers()
			if err != nil {
				return err
			}
			svcs, err := tx.Services()
			if err != nil {
				return err
			}
			raw, err := json.Marshal([]any{node, peers, svcs})
			sum = sha256.Sum256(raw)
			a.metrics.peers.Set(float64(len(peers)))
			a.metrics.services.Set(float64(len(svcs)))
			return err
		})
		if err == nil && sum != last {
			last = sum
			a.kick()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// loop runs reconciles when kicked and on the resync interval, GC and
// Status polls on theirs. One goroutine: the plugins see one call at a time.
func (a *Agent) loop(ctx context.Context) {
	resync := time.NewTicker(a.cfg.ResyncInterval)
	gc := time.NewTicker(a.cfg.GCInterval)
	status := time.NewTicker(a.cfg.StatusInterval)
	defer resync.Stop()
	defer gc.Stop()
	defer status.Stop()
	a.reconcileAll(ctx)
	a.pollStatus(ctx) // and Info: after a reconcile, what the plugin attached is there
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.trigger:
			a.reconcileAll(ctx)
		case <-resync.C:
			a.reconcileAll(ctx)
		case <-gc.C:
			a.gcAll(ctx)
		case <-status.C:
			a.pollStatus(ctx)
		}
	}
}

// callTimeout bounds one plugin call.
const callTimeout = time.Minute

// reconcileAll runs Reconcile on every plugin in conflist order, as CNI
// runs them.
func (a *Agent) reconcileAll(ctx context.Context) {
	for _, h := range a.plugins {
		start := time.Now()
		var r *datapathrpc.Report
		err := h.call(ctx, callTimeout, func(ctx context.Context, c datapathrpc.DatapathClient) (err error) {
			r, err = c.Reconcile(ctx, h.request())
			return err
		})
		a.metrics.reconcileSeconds.WithLabelValues(h.name).Observe(time.Since(start).Seconds())
		a.report(ctx, h, "reconcile", r, err, a.metrics.reconcileErrors.WithLabelValues(h.name).Inc)
	}
}

// gcAll runs GC on every plugin: each drops what no endpoint owns.
func (a *Agent) gcAll(ctx context.Context) {
	for _, h := range a.plugins {
		var r *datapathrpc.Report
		err := h.call(ctx, callTimeout, func(ctx context.Context, c datapathrpc.DatapathClient) (err error) {
			r, err = c.GC(ctx, h.request())
			return err
		})
		a.report(ctx, h, "gc", r, err, a.metrics.gcErrors.WithLabelValues(h.name).Inc)
	}
}

func (a *Agent) report(ctx context.Context, h *hosted, what string, r *datapathrpc.Report, err error, failed func()) {
	if ctx.Err() != nil {
		return
	}
	var problems []string
	switch {
	case errors.Is(err, errReplaced):
		return // the new server is reconciled once it runs
	case errors.Is(err, errDown):
		problems = []string{"plugin server is down (restarting)"}
	case err != nil:
		problems = []string{fmt.Sprintf("%s: %v", what, err)}
	default:
		problems = r.Problems
		for _, c := range r.Changes {
			a.log.Info(what, "plugin", h.name, "change", c)
		}
	}
	for _, p := range problems {
		a.log.Warn(what, "plugin", h.name, "problem", p)
	}
	if len(problems) > 0 {
		failed()
	}
	if what == "reconcile" {
		a.setProblems(h.name, problems)
	}
}

// info records what a plugin server says it is. What it attached changes
// with reconciles, so every status poll asks again; only a change is logged.
func (a *Agent) info(ctx context.Context, h *hosted) {
	var in *datapathrpc.InfoReply
	err := h.call(ctx, 10*time.Second, func(ctx context.Context, c datapathrpc.DatapathClient) (err error) {
		in, err = c.Info(ctx, h.request())
		return err
	})
	if err != nil {
		if !errors.Is(err, errDown) && !errors.Is(err, errReplaced) { // reported already
			a.log.Warn("plugin info", "plugin", h.name, "err", err)
		}
		return
	}
	programs := strconv.Itoa(len(in.Programs))
	if !h.setInfo(in.Version + " " + programs) {
		return
	}
	a.metrics.pluginInfo.DeletePartialMatch(map[string]string{"plugin": h.name})
	a.metrics.pluginInfo.WithLabelValues(h.name, in.Version, programs).Set(1)
	a.log.Info("plugin info", "plugin", in.Name, "version", in.Version, "programs", len(in.Programs),
		"maps", len(in.Maps), "attachments", len(in.Attachments))
}

// pollStatus refreshes the metrics that come from the plugins and the store.
func (a *Agent) pollStatus(ctx context.Context) {
	for _, h := range a.plugins {
		up := 0.0
		if h.up() {
			up = 1
		}
		a.metrics.pluginUp.WithLabelValues(h.name).Set(up)
		var s *datapathrpc.StatusReply
		err := h.call(ctx, 10*time.Second, func(ctx context.Context, c datapathrpc.DatapathClient) (err error) {
			s, err = c.Status(ctx, h.request())
			return err
		})
		if err == nil {
			a.metrics.setStatus(h.name, s)
		}
		a.info(ctx, h)
	}
	if src := a.cfg.Source; src != nil {
		up := 0.0
		if src.Connected() {
			up = 1
		}
		a.metrics.datastoreUp.Set(up)
	}
	_ = a.view(func(tx *store.Tx) error {
		eps, err := tx.Endpoints()
		a.metrics.endpoints.Set(float64(len(eps)))
		return err
	})
}

func (a *Agent) setProblems(key string, p []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.problems[key] = p
}

func (a *Agent) health() health {
	h := health{Status: "ok", Plugins: map[string]bool{}, Datastore: true, Problems: []string{}}
	for _, p := range a.plugins {
		h.Plugins[p.name] = p.up()
		if !p.up() {
			h.Status = "degraded"
		}
	}
	if src := a.cfg.Source; src != nil && !src.Connected() {
		h.Datastore, h.Status = false, "degraded"
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for key, ps := range a.problems {
		for _, p := range ps {
			h.Problems = append(h.Problems, key+": "+p)
		}
	}
	return h
}

// Plugins lists the hosted plugins with their server's pid (0 while down).
func (a *Agent) Plugins() map[string]int {
	out := map[string]int{}
	for _, h := range a.plugins {
		out[h.name] = h.Pid()
	}
	return out
}
