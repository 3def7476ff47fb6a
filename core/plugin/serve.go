package plugin

import (
	"cmp"
	"context"
	"encoding/json"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/braid-cni/braid/core/config"
	"github.com/braid-cni/braid/core/datapathrpc"
)

// Option adds an optional part of a plugin to Main.
type Option func(*server)

// WithGC gives the plugin's garbage collection: drop what no endpoint in
// the store owns. It must decide that while it holds the store, so that a
// concurrent ADD can never lose its new endpoint. Without it GC reconciles.
func WithGC(gc Reconciler) Option { return func(s *server) { s.gc = gc } }

// WithRebuild gives the plugin's rebuild verb (RebuildVerb): recover into a
// fresh node store what the kernel still holds of its state.
func WithRebuild(rebuild Reconciler) Option { return func(s *server) { s.rebuild = rebuild } }

// WithCounters names the indexes of the plugin's counters map, in order (the
// enum in its .c file). A name starting with "drop" marks drop counters.
func WithCounters(names ...string) Option { return func(s *server) { s.counters = names } }

// WithFirst marks the pinned links (by pin name) whose program must run
// first on its tcx hook: Status reports one that another program runs
// ahead of.
func WithFirst(match func(pin string) bool) Option { return func(s *server) { s.first = match } }

// exitWithParent ends the plugin server when the agent that launched it is
// gone (the server is re-parented), so a killed agent leaves no servers
// behind; the datapath they made is pinned and stays. (PR_SET_PDEATHSIG
// would not do: it follows the parent's thread, and Go may end threads.)
func exitWithParent() {
	parent := os.Getppid()
	for range time.Tick(time.Second) {
		if os.Getppid() != parent {
			os.Exit(0)
		}
	}
}

// server is the Datapath service of one plugin binary. Calls are
// serialized: the plugin code was written for one call per process, as CNI
// runs it, and gains nothing from running two at once on one node.
type server struct {
	datapathrpc.UnimplementedDatapathServer
	name      string
	reconcile Reconciler
	gc        Reconciler
	rebuild   Reconciler
	counters  []string
	first     func(pin string) bool
	mu        sync.Mutex
}

func (s *server) Reconcile(_ context.Context, req *datapathrpc.Request) (*datapathrpc.Report, error) {
	return s.run(s.reconcile, req.Config), nil
}

func (s *server) GC(_ context.Context, req *datapathrpc.Request) (*datapathrpc.Report, error) {
	gc := s.gc
	if gc == nil {
		gc = s.reconcile
	}
	return s.run(gc, req.Config), nil
}

// run calls fn as `<plugin> reconcile` would; a failure is a problem in the
// report, not an RPC error, so the agent sees what went wrong and where.
func (s *server) run(fn Reconciler, conf []byte) *datapathrpc.Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &Report{Plugin: s.name}
	if err := fn(conf, r); err != nil {
		r.Problem("%v", err)
	}
	return &datapathrpc.Report{Plugin: s.name, Changes: r.Changes, Problems: r.Problems}
}

func (s *server) Info(_ context.Context, req *datapathrpc.Request) (*datapathrpc.InfoReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	root := bpfRoot(req.Config)
	in := inspect(root, s.name, s.counters, s.first)
	return &datapathrpc.InfoReply{
		Name:        s.name,
		Version:     buildVersion(),
		Programs:    in.programs,
		Maps:        in.maps,
		Attachments: in.attachments,
	}, nil
}

func (s *server) Status(_ context.Context, req *datapathrpc.Request) (*datapathrpc.StatusReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := inspect(bpfRoot(req.Config), s.name, s.counters, s.first)
	return &datapathrpc.StatusReply{
		Plugin:      s.name,
		Attachments: in.attachments,
		Maps:        in.maps,
		Counters:    in.counters,
		Problems:    in.problems,
	}, nil
}

// bpfRoot is the config's bpfRoot, or the default. Info and Status only
// read pins, so a config the plugin would refuse still tells where they are.
func bpfRoot(conf []byte) string {
	var c config.Common
	if json.Unmarshal(conf, &c) != nil || c.BPFRoot == "" {
		return config.DefaultBPFRoot
	}
	return c.BPFRoot
}

// stampedVersion is the release a build was stamped with (-ldflags "-X
// github.com/braid-cni/braid/core/plugin.stampedVersion=v1.2.3"); empty if none.
var stampedVersion string

// buildVersion is the stamped version, else the module version the binary
// was built from, with the VCS revision when the build recorded one.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return cmp.Or(stampedVersion, "unknown")
	}
	v := cmp.Or(stampedVersion, info.Main.Version)
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			v += " " + s.Value
		}
	}
	return v + " " + info.GoVersion
}
