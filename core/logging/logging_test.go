package logging

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestLogFileIsPrivate: the log's folder and file are made for their owner
// only whatever the caller's umask, and a log file that already exists
// with group or other permissions loses them.
func TestLogFileIsPrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "log", "braid") // New makes it
	file := filepath.Join(dir, "cni.log")
	log, closeFn := New(file, 0, "test")
	log.Info("hello")
	closeFn()
	for path, want := range map[string]os.FileMode{dir: 0o700, file: 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want %v", path, fi.Mode(), err, want)
		}
	}

	loose := filepath.Join(t.TempDir(), "loose.log")
	if err := os.WriteFile(loose, []byte("old line\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	log, closeFn = New(loose, 0, "test")
	log.Info("hello")
	closeFn()
	if fi, err := os.Stat(loose); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("a 0666 log file after New: %v %v, want 0600", fi.Mode(), err)
	}
}
