// Package permissions checks what braid leaves on a node's disk and bpffs
// after real CNI calls: the state store, the log and every pin readable by
// root only, the state dir 0700, and nothing world-writable (file, folder
// or socket) under stateDir, bpfRoot or the log's folder — even when the
// runtime calling the plugins runs with umask 0, as some daemons do.
package permissions

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
)

// TestPermissions drives both routing modes with every braid plugin
// (ADD, CHECK, DEL, services and braid sync), then walks what they made.
func TestPermissions(t *testing.T) {
	// The plugins inherit the test's umask through libcni's exec.
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })

	topo := harness.New(t)
	repo, err := harness.Repo()
	if err != nil {
		t.Fatal(err)
	}
	for _, conflist := range []string{"native-lb.conflist", "vxlan-lb.conflist"} {
		n := topo.AddNode(t)
		// A log folder that does not exist yet: the plugins make it.
		logDir := filepath.Join(n.Dir, "log", "braid")
		c := n.Conflist(t, conflist, n.SockLB(t, nil),
			harness.PluginKeys(map[string]any{"logFile": filepath.Join(logDir, "cni.log")}))
		a, b := c.AddPod(t, "a"), c.AddPod(t, "b")
		if err := a.Check(); err != nil {
			t.Fatalf("%s: CHECK: %v", conflist, err)
		}
		n.Braid(t, "service", "add", "web", "--vip", "198.18.100.10", "--port", "80",
			"--backend", b.IP.String()+":8080")
		n.Braid(t, "sync", "--conflist", c.File, "--cni-path", filepath.Join(repo, "bin"))
		if err := a.Del(); err != nil {
			t.Fatalf("%s: DEL: %v", conflist, err)
		}

		t.Run(conflist, func(t *testing.T) {
			requireMode(t, n.StateDir, 0o700)
			requirePrivate(t, filepath.Join(n.StateDir, "braid.db"))
			requirePrivate(t, filepath.Join(logDir, "cni.log"))
			requireMode(t, logDir, 0o700)
			requirePrivate(t, filepath.Join(n.BPFRoot, "endpoints"))
			var pins int
			for _, root := range []string{n.StateDir, n.BPFRoot, logDir} {
				pins += walk(t, root)
			}
			t.Logf("%d files and pins checked", pins)
			if pins < 10 {
				t.Errorf("only %d files under stateDir, bpfRoot and the log folder: the walk missed the pins", pins)
			}
		})
	}
}

// TestLooseFilesTightened: a store and a log file that already exist with
// group and other permissions (a restored backup, a log made by hand) are
// private again after the next CNI call.
func TestLooseFilesTightened(t *testing.T) {
	n := harness.New(t).AddNode(t)
	logFile := filepath.Join(n.Dir, "loose.log")
	if err := os.WriteFile(logFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(n.StateDir, "braid.db")
	if err := os.Chmod(db, 0o644); err != nil {
		t.Fatal(err)
	}
	c := n.Conflist(t, "node-local.conflist", harness.PluginKeys(map[string]any{"logFile": logFile}))
	p := c.AddPod(t, "a")
	if err := p.Del(); err != nil {
		t.Fatal(err)
	}
	requirePrivate(t, db)
	requirePrivate(t, logFile)
}

// walk checks every entry under root and returns how many files (and pins)
// it saw: owned by root; files and pins with no group or other permission;
// folders not writable by group or other; no socket with any permission
// for group or other.
func walk(t *testing.T, root string) int {
	t.Helper()
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		mode := fi.Mode()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
			t.Errorf("%s is owned by uid %d, not root", path, st.Uid)
		}
		switch {
		case mode.IsDir():
			if mode.Perm()&0o022 != 0 {
				t.Errorf("folder %s is %v: writable by group or other", path, mode)
			}
		case mode&fs.ModeSocket != 0:
			if mode.Perm()&0o077 != 0 {
				t.Errorf("socket %s is %v: open to group or other", path, mode)
			}
		default:
			files++
			if mode.Perm()&0o077 != 0 {
				t.Errorf("%s is %v: readable or writable by group or other", path, mode)
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("walk %s: %v", root, err)
	}
	return files
}

// requireMode fails t unless path's permission bits are exactly perm.
func requireMode(t *testing.T, path string, perm fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if fi.Mode().Perm() != perm {
		t.Errorf("%s is %v, want %v", path, fi.Mode().Perm(), perm)
	}
}

// requirePrivate fails t unless path exists and only its owner (root) may
// read or write it.
func requirePrivate(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if p := fi.Mode().Perm(); p&0o077 != 0 || p&0o400 == 0 {
		t.Errorf("%s is %v, want readable by its owner only", path, p)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 {
		t.Errorf("%s is owned by uid %d", path, st.Uid)
	}
}
