// Package bpffs owns the layout of a node's pins under bpfRoot:
//
//	<bpfRoot>/endpoints              shared endpoint map (contract)
//	<bpfRoot>/<plugin>/<map>         a plugin's private maps
//	<bpfRoot>/<plugin>/links/<name>  a plugin's pinned tcx/cgroup links
//
// and makes sure a bpffs is mounted there.
package bpffs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// sysBPF is where the host's bpffs is conventionally mounted.
const sysBPF = "/sys/fs/bpf"

// IsMounted reports whether path is on a bpffs.
func IsMounted(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.BPF_FS_MAGIC
}

// Ensure makes bpfRoot a directory on a bpffs: under /sys/fs/bpf it mounts
// the host's bpffs there if needed; anywhere else (a test node's root) it
// mounts a bpffs of its own on bpfRoot, so each node gets separate pins.
func Ensure(bpfRoot string) error {
	if IsMounted(bpfRoot) {
		return nil
	}
	mountPoint := bpfRoot
	if strings.HasPrefix(bpfRoot, sysBPF+"/") {
		mountPoint = sysBPF
	}
	if !IsMounted(mountPoint) {
		if err := os.MkdirAll(mountPoint, 0o700); err != nil {
			return fmt.Errorf("bpffs: create %s: %w", mountPoint, err)
		}
		if err := mountOnce(mountPoint); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(bpfRoot, 0o700); err != nil {
		return fmt.Errorf("bpffs: create %s: %w", bpfRoot, err)
	}
	return nil
}

// mountOnce mounts a bpffs on dir unless one is already there, holding an
// flock on dir meanwhile: callers racing to prepare a fresh node would
// otherwise stack several bpffs mounts, and pins made in a lower one vanish
// from view (two endpoint maps on one node). A caller that opens dir after
// the mount locks the new bpffs root instead, and finds it mounted.
func mountOnce(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("bpffs: open %s: %w", dir, err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("bpffs: lock %s: %w", dir, err)
	}
	if IsMounted(dir) {
		return nil
	}
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("bpffs: mount on %s: %w", dir, err)
	}
	return nil
}

// PluginDir is a plugin's own folder under bpfRoot, created if missing.
func PluginDir(bpfRoot, plugin string) (string, error) {
	dir := filepath.Join(bpfRoot, plugin)
	return dir, os.MkdirAll(filepath.Join(dir, "links"), 0o700)
}

// LinkPin is where a plugin pins the link named name.
func LinkPin(bpfRoot, plugin, name string) string {
	return filepath.Join(bpfRoot, plugin, "links", name)
}

// LinkPins lists a plugin's pinned link names.
func LinkPins(bpfRoot, plugin string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(bpfRoot, plugin, "links"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, err
}

// Remove deletes a pin; absent is fine.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
