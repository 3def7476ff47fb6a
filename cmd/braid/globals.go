package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/braid-cni/braid/core/config"
	"github.com/braid-cni/braid/core/store"
	"github.com/spf13/cobra"
)

// globals are the flags every command takes.
type globals struct {
	stateDir string
	bpfRoot  string
	output   string
	ds       datastoreFlags // service and node commands: the cluster datastore
}

func (g *globals) bind(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&g.stateDir, "state-dir", config.DefaultStateDir, "node state directory")
	f.StringVar(&g.bpfRoot, "bpf-root", config.DefaultBPFRoot, "bpffs folder holding the node's pins")
	f.StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if g.output != "table" && g.output != "json" {
			return fmt.Errorf("--output must be table or json, not %q", g.output)
		}
		return nil
	}
}

// openStore opens the node store with a short lock wait: a person is waiting.
func (g *globals) openStore() (*store.Store, error) {
	return store.Open(g.stateDir, 5*time.Second)
}

// table is something printable as rows or as JSON.
type table struct {
	header []string
	rows   [][]string
	json   any
}

func (g *globals) print(w io.Writer, t table) error {
	if g.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(t.json)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.header, "\t"))
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func stdout() io.Writer { return os.Stdout }

// update runs fn in a store write transaction.
func (g *globals) update(fn func(*store.Tx) error) error {
	st, err := g.openStore()
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Update(fn)
}

// view runs fn in a store read transaction.
func (g *globals) view(fn func(*store.Tx) error) error {
	st, err := g.openStore()
	if err != nil {
		return err
	}
	defer st.Close()
	return st.View(fn)
}

// readAllLimited reads at most 64 MiB: a service file, not a stream.
func readAllLimited(r io.Reader) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, 64<<20))
}
