package harness

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/braid-cni/braid/internal/testenv"
)

// RequireRoot skips t unless it runs as root with the given programs on
// PATH. Under CI (testenv.InCI) it fails instead: a CI run must never pass
// by skipping its integration suites.
func RequireRoot(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "integration tests need root (they create network namespaces and mount bpffs)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, "integration tests need %s on PATH (make deps installs it)", tool)
		}
	}
}

// Repo is the braid repository root: the plugins are taken from Repo/bin and
// the reference plugins from Repo/bin/tools/cni, the conflists from
// Repo/chain-configs.
var Repo = sync.OnceValues(func() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "chain-configs")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no braid repository (go.mod and chain-configs/) above the working directory")
		}
		dir = parent
	}
})

// binDir holds braid's binaries; toolsCNIDir the reference CNI plugins.
func binDir(repo string) string      { return filepath.Join(repo, "bin") }
func toolsCNIDir(repo string) string { return filepath.Join(repo, "bin", "tools", "cni") }

// requireBinary finds name among the built binaries or the reference
// plugins, or skips (fails under CI) with how to build it.
func requireBinary(t testing.TB, name string) string {
	t.Helper()
	repo, err := Repo()
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{binDir(repo), toolsCNIDir(repo)} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	testenv.Unavailable(t, "%s is not built: run `make build deps` first", name)
	return ""
}
