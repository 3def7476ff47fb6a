package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Cgroup2 is the machine's cgroup v2 mount (the unified one of a hybrid
// layout), or "" when there is none.
func Cgroup2() string {
	for _, p := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return p
		}
	}
	return ""
}

// Cgroup makes the cgroup v2 directory <cgroup2>/<name> for t, removing a
// leftover of a crashed earlier run first, and removes it (killing every
// process still in it) when t ends. It needs root.
func Cgroup(t testing.TB, name string) string {
	t.Helper()
	RequireRoot(t)
	root := Cgroup2()
	if root == "" {
		Unavailable(t, "no cgroup v2 mount at /sys/fs/cgroup/unified or /sys/fs/cgroup")
	}
	path := filepath.Join(root, name)
	if err := RemoveCgroup(path); err != nil {
		t.Fatalf("remove leftover cgroup: %v", err)
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		Unavailable(t, "cannot make cgroup %s: %v", path, err)
	}
	t.Cleanup(func() {
		if err := RemoveCgroup(path); err != nil {
			t.Errorf("remove cgroup: %v", err)
		}
	})
	return path
}

// RemoveCgroup removes the cgroup v2 directory path and every cgroup below
// it, killing the processes in them first. Absent is fine.
func RemoveCgroup(path string) error {
	var dirs []string
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	// cgroup.kill (5.14+) kills the whole subtree.
	if err := os.WriteFile(filepath.Join(path, "cgroup.kill"), []byte("1"), 0); err != nil {
		return fmt.Errorf("kill the processes of cgroup %s: %w", path, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for populated(path) {
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still has processes 5s after cgroup.kill", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
	slices.Reverse(dirs) // deepest first
	for _, d := range dirs {
		if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove cgroup %s: %w", d, err)
		}
	}
	return nil
}

// populated reports whether a process is left in the cgroup's subtree.
func populated(path string) bool {
	b, err := os.ReadFile(filepath.Join(path, "cgroup.events"))
	return err == nil && bytes.Contains(b, []byte("populated 1"))
}

// CgroupFD opens the cgroup directory path for exec.Cmd's
// SysProcAttr.CgroupFD (a child born in that cgroup); closed when t ends.
func CgroupFD(t testing.TB, path string) int {
	t.Helper()
	fd, err := unix.Open(path, unix.O_DIRECTORY|unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open cgroup %s: %v", path, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}
