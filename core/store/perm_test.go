package store

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestStoreIsPrivate: the state dir is 0700 and the store 0600 whatever
// the caller's umask, and a store file with group or other permissions
// (restored from a backup, say) loses them on the next open.
func TestStoreIsPrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	path := filepath.Join(dir, FileName)
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want %v", p, fi.Mode(), err, want)
		}
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("a 0644 store after Open: %v %v, want 0600", fi.Mode(), err)
	}
}
