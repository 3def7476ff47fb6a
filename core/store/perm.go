package store

import "os"

// restrictMode makes the store file path readable and writable by its owner
// only, when it has group or other permission bits: bolt.Open creates it
// 0600, but a file restored from a backup or copied by hand keeps its mode,
// and the store names every pod on the node. Best effort: a store that can
// be opened is never refused for its mode.
func restrictMode(path string) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		_ = os.Chmod(path, fi.Mode().Perm()&0o700)
	}
}
