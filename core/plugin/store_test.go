package plugin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/cnierr"
	"github.com/braid-cni/braid/core/config"
	"github.com/braid-cni/braid/core/store"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

// The store's typed errors reach the runtime with their CNI codes, even
// when a verb wrapped them (as internal errors) on the way up, and keep
// their message and cause.
func TestStoreErrorCodes(t *testing.T) {
	dir := t.TempDir()
	held, err := OpenStore(config.Common{StateDir: dir, LockTimeout: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, lockErr := OpenStore(config.Common{StateDir: dir, LockTimeout: "50ms"})
	corrupt := filepath.Join(t.TempDir(), "corrupt")
	if err := os.MkdirAll(corrupt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(corrupt, store.FileName), []byte(strings.Repeat("not a bolt file ", 512)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, corruptErr := store.Open(corrupt, time.Second)

	for _, c := range []struct {
		name string
		err  error
		code uint
	}{
		{"locked", lockErr, types.ErrTryAgainLater},
		{"corrupt", corruptErr, types.ErrIOFailure},
		{"missing record", store.ErrNotFound, 0},
	} {
		verb := func(*skel.CmdArgs) error { return cnierr.Wrap(fmt.Errorf("session: %w", c.err), "veth-ebpf ADD") }
		got := storeErrors(skel.CNIFuncs{Add: verb}).Add(nil)
		var cniErr *types.Error
		if !errors.As(got, &cniErr) || !errors.Is(got, c.err) {
			t.Fatalf("%s: %v lost its CNI error or its cause", c.name, got)
		}
		if want := c.code; want != 0 && (cniErr.Code != want || !strings.HasPrefix(cniErr.Msg, "veth-ebpf ADD: session: ")) {
			t.Errorf("%s: code %d %q, want %d with the verb's context", c.name, cniErr.Code, cniErr.Msg, want)
		}
		if c.code == 0 && cniErr.Code != types.ErrInternal {
			t.Errorf("%s: code %d, want internal", c.name, cniErr.Code)
		}
	}
}
