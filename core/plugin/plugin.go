// Package plugin is the entry point every braid plugin binary shares. Run by
// a container runtime (CNI_COMMAND set) the binary is a CNI plugin; run as
// `<plugin> reconcile` with its network config on stdin it brings its
// node-wide datapath (maps, routes, devices) in line with the node store and
// prints a Report as JSON (`braid sync` drives this); started by `braid
// agent` with the go-plugin handshake it serves the Datapath gRPC service
// (core/datapathrpc), whose Reconcile runs the same code.
package plugin

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/braid-cni/braid/core/datapathrpc"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/utils/buildversion"
)

// Versions are the CNI spec versions every braid plugin speaks.
var Versions = version.PluginSupports("0.4.0", "1.0.0", "1.1.0")

// ReconcileVerb is the argument that selects reconcile mode.
const ReconcileVerb = "reconcile"

// RebuildVerb is the argument that selects rebuild mode: write into a fresh
// node store (its identity already set) the state the plugin can recover
// from the kernel (`braid node rebuild` runs it). A plugin without
// WithRebuild has nothing to recover and reports no change.
const RebuildVerb = "rebuild"

// Report is what a reconcile did and what it could not fix.
type Report struct {
	Plugin   string   `json:"plugin"`
	Changes  []string `json:"changes"`
	Problems []string `json:"problems"`
}

// Changed records a change made.
func (r *Report) Changed(format string, a ...any) {
	r.Changes = append(r.Changes, fmt.Sprintf(format, a...))
}

// Problem records something reconcile could not put right.
func (r *Report) Problem(format string, a ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, a...))
}

// Reconciler brings a plugin's node-wide state in line with the store,
// given the plugin's network config.
type Reconciler func(stdin []byte, report *Report) error

// Main runs the plugin: CNI when a runtime calls it, reconcile mode when
// asked, the Datapath service when braid agent launched it.
func Main(name string, funcs skel.CNIFuncs, reconcile Reconciler, opts ...Option) {
	if os.Getenv("CNI_COMMAND") == "" {
		s := &server{name: name, reconcile: reconcile}
		for _, o := range opts {
			o(s)
		}
		if len(os.Args) == 2 && os.Args[1] == ReconcileVerb {
			os.Exit(runReconcile(name, reconcile))
		}
		if len(os.Args) == 2 && os.Args[1] == RebuildVerb {
			rebuild := s.rebuild
			if rebuild == nil {
				rebuild = func([]byte, *Report) error { return nil }
			}
			os.Exit(runReconcile(name, rebuild))
		}
		if datapathrpc.Launched() {
			go exitWithParent()
			datapathrpc.Serve(s)
			return
		}
	}
	skel.PluginMainFuncs(storeErrors(funcs), Versions, buildversion.BuildString(name))
}

func runReconcile(name string, reconcile Reconciler) int {
	stdin, err := readAll(os.Stdin)
	report := &Report{Plugin: name, Changes: []string{}, Problems: []string{}}
	if err == nil {
		err = reconcile(stdin, report)
	}
	if err != nil {
		report.Problem("%v", err)
	}
	_ = json.NewEncoder(os.Stdout).Encode(report)
	if err != nil {
		return 1
	}
	return 0
}
