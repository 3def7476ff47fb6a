package harness

// Chains whose plugins come from a folder of the test's own rather than
// from the repository's bin/: an upgrade replaces the binaries of one
// node under its running pods, as a package manager would, without
// touching what other tests run.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// WithCNIPath is a copy of the chain (same conflist and libcni cache) whose
// plugins are looked up in dirs first, then where the chain looked.
func (c *Chain) WithCNIPath(dirs ...string) *Chain {
	cp := *c
	cp.cni = libcni.NewCNIConfigWithCacheDir(append(append([]string{}, dirs...), c.cni.Path...),
		filepath.Join(c.Node.Dir, "cni-cache"),
		&invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}})
	return &cp
}

// CNIPath is where the chain's plugins are looked up, in order.
func (c *Chain) CNIPath() []string { return append([]string{}, c.cni.Path...) }

// SyncWith runs `braid sync` for the chain's conflist with the chain's own
// CNI path (see WithCNIPath), and returns its output.
func (c *Chain) SyncWith(t testing.TB) ([]byte, error) {
	t.Helper()
	return c.Node.TryBraid(t, "sync", "--conflist", c.File, "--cni-path", strings.Join(c.cni.Path, string(os.PathListSeparator)))
}

// InstallBinary copies src to dir/name the way a package manager replaces
// a binary in use: written beside it, then renamed over it, so a process
// starting at any moment runs either the old file or the new one, whole.
func InstallBinary(src, dir, name string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(dir, "."+name+".new-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("install %s: %w", name, err)
	}
	return nil
}

// RepoBinary is the path of a binary built into the repository's bin/
// (braid or a plugin), skipping t (failing under CI) if it is not built.
func RepoBinary(t testing.TB, name string) string {
	t.Helper()
	return requireBinary(t, name)
}
