package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces live, as with `ip netns`.
const netnsDir = "/run/netns"

// NS is a named network namespace made by the harness: a node, a pod or
// the underlay.
type NS struct {
	Path string // /run/netns/<name>
}

func (ns *NS) String() string { return filepath.Base(ns.Path) }

// Do runs fn on an OS thread that has joined ns, and is safe to call from
// any goroutine. Sockets fn opens and processes it starts stay in ns.
func (ns *NS) Do(fn func() error) error {
	return onThrowawayThread(func() error {
		f, err := os.Open(ns.Path)
		if err != nil {
			return fmt.Errorf("netns %s: %w", ns, err)
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("join netns %s: %w", ns, err)
		}
		return fn()
	})
}

// onThrowawayThread runs fn on a locked OS thread that is never unlocked:
// when the goroutine ends the runtime discards the thread, so a thread left
// in another namespace can never run unrelated goroutines, and there is no
// "switch back" step that could fail.
func onThrowawayThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- fn()
	}()
	return <-errc
}

// commandTimeout bounds every program the harness runs.
const commandTimeout = 15 * time.Second

// Run runs a program inside ns and returns its stdout; on failure the error
// carries stderr.
func (ns *NS) Run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := ns.Do(cmd.Run); err != nil {
		return stdout.Bytes(), fmt.Errorf("in %s: %s %s: %w: %s", ns, filepath.Base(name),
			strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// Sysctl writes value to /proc/sys/<key> (key like "net/ipv4/ip_forward")
// inside ns: net sysctls are per netns and resolved by the writing thread.
func (ns *NS) Sysctl(key, value string) error {
	return ns.Do(func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
	})
}

// ReadSysctl reads /proc/sys/<key> inside ns.
func (ns *NS) ReadSysctl(key string) (string, error) {
	var v []byte
	err := ns.Do(func() (err error) {
		v, err = os.ReadFile(filepath.Join("/proc/sys", key))
		return err
	})
	return strings.TrimSpace(string(v)), err
}

// createNS makes a new named network namespace, like `ip netns add`.
func createNS(name string) (*NS, error) {
	ns := &NS{Path: filepath.Join(netnsDir, name)}
	if err := sharedNetnsDir(); err != nil {
		return nil, err
	}
	if err := os.WriteFile(ns.Path, nil, 0o444); err != nil {
		return nil, err
	}
	err := onThrowawayThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		// The bind mount keeps the namespace alive after this thread dies.
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		return unix.Mount(self, ns.Path, "", unix.MS_BIND, "")
	})
	if err != nil {
		_ = os.Remove(ns.Path)
		return nil, fmt.Errorf("create netns %s: %w", name, err)
	}
	return ns, nil
}

// sharedNetnsDir makes netnsDir a shared bind mount of itself, as `ip
// netns add` and podman do when it is not one yet. Done first, before any
// namespace is pinned in it: a self-bind made later (by another test
// package's podman or ip, running in parallel) would cover the pins made
// before it, and a covered pin can be neither unmounted nor removed. Shared,
// so that a pin's unmount reaches the copies in the mount namespaces that
// containers make. The lock keeps parallel test binaries from binding twice.
func sharedNetnsDir() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(filepath.Dir(netnsDir), ".braid-test-netns.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	mounts, err := mountsUnder(netnsDir)
	if err != nil {
		return err
	}
	if !slices.Contains(mounts, netnsDir) {
		if err := unix.Mount(netnsDir, netnsDir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", netnsDir, err)
		}
	}
	if err := unix.Mount("", netnsDir, "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", netnsDir, err)
	}
	return nil
}

// deleteNS removes a named namespace; the kernel frees it, and the devices
// in it, once nothing else holds it. Absent is fine.
func deleteNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
