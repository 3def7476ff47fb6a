// Package cgroup attaches socket programs to a cgroup v2 directory with
// pinned links, so the attachment outlives the CNI process that made it.
package cgroup

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// IsV2 reports whether path is a cgroup v2 directory.
func IsV2(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// DefaultRoot is the host's cgroup v2 root: the unified mount of a hybrid
// layout, or /sys/fs/cgroup on a pure v2 host.
func DefaultRoot() string {
	for _, p := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if IsV2(p) {
			return p
		}
	}
	return "/sys/fs/cgroup"
}

// Attach makes prog run at attach for every socket under the cgroup at path,
// pinned at pin. A link already pinned for the same cgroup has its program
// replaced in place.
func Attach(path string, attach ebpf.AttachType, prog *ebpf.Program, pin string) error {
	id, err := cgroupID(path)
	if err != nil {
		return err
	}
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		defer l.Close()
		if attachedTo(l) == id {
			return l.Update(prog)
		}
		if err := l.Unpin(); err != nil {
			return fmt.Errorf("cgroup: replace stale pin %s: %w", pin, err)
		}
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: path, Attach: attach, Program: prog})
	if err != nil {
		return fmt.Errorf("cgroup: attach %s to %s: %w", attach, path, err)
	}
	defer l.Close()
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("cgroup: pin %s: %w", pin, err)
	}
	return nil
}

// Verify checks that the link pinned at pin is attached to the cgroup at path.
func Verify(path, pin string) error {
	id, err := cgroupID(path)
	if err != nil {
		return err
	}
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no link pinned at %s", pin)
	}
	if err != nil {
		return fmt.Errorf("link pinned at %s: %w", pin, err)
	}
	defer l.Close()
	if attachedTo(l) != id {
		return fmt.Errorf("link pinned at %s is not attached to cgroup %s", pin, path)
	}
	return nil
}

// cgroupID is the cgroup's id: the inode number of its directory.
func cgroupID(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", path, err)
	}
	return st.Ino, nil
}

func attachedTo(l link.Link) uint64 {
	info, err := l.Info()
	if err != nil {
		return 0
	}
	if c := info.Cgroup(); c != nil {
		return c.CgroupId
	}
	return 0
}
