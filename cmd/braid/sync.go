package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/braid-cni/braid/core/conflist"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func syncCmd(g *globals) *cobra.Command {
	var conflist, cniPath string
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "bring every braid plugin of the node's conflist in line with the store",
		Long: "sync runs each plugin of the conflist in reconcile mode: node-wide devices, routes,\n" +
			"maps and attachments are made to match the node store. Plugins that are not braid's\n" +
			"(ptp, say) are skipped.",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			reports, err := runConflist(conflist, filepath.SplitList(cniPath), plugin.ReconcileVerb)
			if err != nil {
				return err
			}
			t := table{header: []string{"PLUGIN", "RESULT"}, json: reports}
			problems := 0
			for _, r := range reports {
				if len(r.Changes) == 0 && len(r.Problems) == 0 {
					t.rows = append(t.rows, []string{r.Plugin, "in sync"})
				}
				for _, c := range r.Changes {
					t.rows = append(t.rows, []string{r.Plugin, c})
				}
				for _, p := range r.Problems {
					t.rows = append(t.rows, []string{r.Plugin, "PROBLEM: " + p})
				}
				problems += len(r.Problems)
			}
			if err := g.print(stdout(), t); err != nil {
				return err
			}
			if problems > 0 {
				return fmt.Errorf("%d problem(s) left", problems)
			}
			return nil
		},
	}
	conflistFlags(cmd.Flags(), &conflist, &cniPath)
	return cmd
}

// conflistFlags are the flags that find the node's conflist and its plugins.
func conflistFlags(f *pflag.FlagSet, conflist, cniPath *string) {
	defPath := os.Getenv("CNI_PATH")
	if defPath == "" {
		defPath = "/opt/cni/bin"
	}
	f.StringVar(conflist, "conflist", "/etc/cni/net.d/braid.conflist", "the node's conflist")
	f.StringVar(cniPath, "cni-path", defPath, "where the plugin binaries are (a PATH-style list)")
}

// runConflist runs `<plugin> <verb>` (reconcile, rebuild) for each plugin in
// the conflist, in its order, with the config libcni would give it, and
// collects the reports.
func runConflist(path string, cniPath []string, verb string) ([]plugin.Report, error) {
	plugins, err := conflist.Read(path, cniPath)
	if err != nil {
		return nil, err
	}
	reports := []plugin.Report{}
	for _, p := range plugins {
		r, ok, err := runPlugin(p.Bin, verb, p.Conf)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: %w", p.Type, err)
		}
		if ok {
			reports = append(reports, r)
		}
	}
	return reports, nil
}

// runPlugin runs one plugin with verb. A plugin that prints no report is not
// a braid plugin (ok false).
func runPlugin(bin, verb string, conf []byte) (r plugin.Report, ok bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, verb)
	cmd.Env = conflist.Environ()
	cmd.Stdin = bytes.NewReader(conf)
	var out bytes.Buffer
	cmd.Stdout = &out
	runErr := cmd.Run()
	if out.Len() == 0 {
		return r, false, nil
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || r.Plugin == "" {
		return r, false, nil
	}
	if runErr != nil && len(r.Problems) == 0 {
		r.Problems = append(r.Problems, runErr.Error())
	}
	return r, true, nil
}
