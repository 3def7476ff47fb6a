package store

import (
	"fmt"
	"os"
	"runtime/debug"
	"time"
)

// rebuildHint is how an operator recovers a store that cannot be read.
const rebuildHint = "`braid node rebuild` recovers it from kernel state"

// CorruptError is a store file that cannot be trusted (CNI error 5 at the
// plugin layer): empty, truncated, overwritten, or holding a record that
// does not decode.
type CorruptError struct{ Path, Reason string }

func (e *CorruptError) Error() string {
	return fmt.Sprintf("state store %s is corrupt: %s; %s", e.Path, e.Reason, rebuildHint)
}

// corrupt is the error for a store file that cannot be trusted.
func corrupt(path, format string, a ...any) error {
	return &CorruptError{Path: path, Reason: fmt.Sprintf(format, a...)}
}

// LockedError is a store another process held for longer than the
// caller would wait (CNI error 11, try again later, at the plugin layer).
type LockedError struct {
	Path    string
	Timeout time.Duration
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("state store %s is locked by another process for more than %s; try again", e.Path, e.Timeout)
}

// IOError is a store that cannot be created or opened for another reason
// (CNI error 5 at the plugin layer); Err is the cause.
type IOError struct {
	Op, Path string
	Err      error
}

func (e *IOError) Error() string { return fmt.Sprintf("%s %s: %v", e.Op, e.Path, e.Err) }
func (e *IOError) Unwrap() error { return e.Err }

// checkNotEmpty refuses a store file of zero bytes once the store has been
// initialized (its marker exists): bbolt would take it for a new store, and
// a node whose store was truncated would seem uninitialized, its pods
// forgotten (and then collected by GC). Without the marker an empty file is
// one another process is creating right now: bbolt creates the file before
// it takes its lock, and writes the first pages under it.
func checkNotEmpty(path string) error {
	st, err := os.Stat(path)
	if err != nil || st.Size() != 0 {
		return nil
	}
	if _, err := os.Stat(markerPath(path)); err == nil {
		return corrupt(path, "the file is empty (truncated?)")
	}
	return nil
}

// markerPath records that the store at path was initialized once.
func markerPath(path string) string { return path + ".initialized" }

// markInitialized writes the marker; it is called under bbolt's lock once
// the first schema transaction has committed.
func markInitialized(path string) error {
	return os.WriteFile(markerPath(path), nil, 0o600)
}

// guarded runs fn, turning a panic into a corrupt-store error: bbolt
// panics on pages it cannot make sense of (a torn or overwritten file)
// rather than returning an error, and reads through its mmap past the end of
// a truncated file fault; a CNI plugin must answer with a CNI error, not a
// stack trace. A transaction that panics is rolled back by bbolt before the
// panic reaches here.
func guarded(path string, fn func() error) (err error) {
	// A fault in the mmap becomes a panic (on this goroutine only).
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = corrupt(path, "%v", r)
		}
	}()
	return fn()
}
