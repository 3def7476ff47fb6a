// Package testenv lets braid's tests say what they need from the machine
// (root, a bpffs) in one line. Where a need is not met the test is skipped
// on a developer machine, but fails when CI=true: CI must run everything.
package testenv

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// InCI reports whether the CI environment variable is set to a true value.
func InCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// Unavailable stops t because the machine lacks something: Skip locally,
// Fatal in CI.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true but the test cannot run: "+format, args...)
	}
	t.Skipf(format, args...)
}

// RequireRoot stops t unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root (euid is %d)", os.Geteuid())
	}
}

// BPFFS mounts a fresh, private bpffs on a new temporary directory and
// returns its path; it is unmounted (dropping every pin in it) when t ends.
// It needs root.
func BPFFS(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		Unavailable(t, "cannot mount a bpffs on %s: %v", dir, err)
	}
	// Registered after TempDir's own cleanup, so it runs before the removal.
	t.Cleanup(func() { Unmount(t, dir) })
	return dir
}

// Unmount detaches the mount at dir, failing t on error.
func Unmount(t testing.TB, dir string) {
	t.Helper()
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		t.Errorf("unmount %s: %v", dir, err)
	}
}
