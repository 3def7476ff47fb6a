// Package logging sets up the slog logger of a short-lived plugin process:
// to logFile when configured, otherwise to stderr (which runtimes capture).
package logging

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
)

// New returns a logger writing JSON lines at level to file, and a function
// that closes the file. Without a file only warnings and errors are written,
// to stderr, so cnitool and runtimes are not flooded.
func New(file string, level slog.Level, plugin string) (*slog.Logger, func()) {
	var w io.Writer = os.Stderr
	closeFn := func() {}
	if file == "" {
		level = max(level, slog.LevelWarn)
	} else {
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err == nil {
			if f, err := os.OpenFile(file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600); err == nil {
				restrictMode(f)
				w, closeFn = f, func() { f.Close() }
			}
		}
	}
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(h).With("plugin", plugin, "pid", os.Getpid()), closeFn
}

// restrictMode drops group and other permissions from a log file that has
// them (made by hand, or by a rotation that did not keep the mode): the log
// names every pod and address of the node.
func restrictMode(f *os.File) {
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
		_ = f.Chmod(fi.Mode().Perm() & 0o700)
	}
}
