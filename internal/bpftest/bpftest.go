// Package bpftest is the scaffolding the plugins' BPF unit tests share: load
// a plugin's objects with nothing pinned, run a tc program on a crafted frame
// with BPF_PROG_TEST_RUN, compare counters, move a test into a network
// namespace of its own (for programs that consult routes, neighbours or
// devices).
//
// A tc program under test_run sees the frame as received on the device
// named by SkbContext.Ifindex (0 and 1 mean the loopback device); helpers
// that redirect only return TC_ACT_REDIRECT, nothing is sent, and the
// tunnel metadata a VXLAN device would attach cannot be supplied.
package bpftest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/internal/testenv"
	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Verdicts as test_run reports them (a u32).
const (
	OK       = 0
	Shot     = 2
	Redirect = 7
	Next     = 0xffffffff // TCX_NEXT, -1
)

// VerdictName names a tc verdict.
func VerdictName(v uint32) string {
	switch v {
	case OK:
		return "TC_ACT_OK"
	case Shot:
		return "TC_ACT_SHOT"
	case Redirect:
		return "TC_ACT_REDIRECT"
	case Next:
		return "TCX_NEXT"
	}
	return fmt.Sprint(int32(v))
}

// SkbContext is the head of struct __sk_buff, up to ifindex: test_run takes
// a prefix and requires every field it does not support to be zero.
type SkbContext struct {
	Len, PktType, Mark, QueueMapping, Protocol, VlanPresent, VlanTCI, VlanProto uint32
	Priority, IngressIfindex, Ifindex                                           uint32
}

// Run runs prog once, in the caller's network namespace, on frame and returns the verdict and the frame as the
// program left it (it may have grown or shrunk).
func Run(prog *ebpf.Program, frame []byte, ctx SkbContext) (uint32, []byte, error) {
	opts := &ebpf.RunOptions{
		Data:    frame,
		DataOut: make([]byte, len(frame)+256),
		Context: ctx,
	}
	ret, err := prog.Run(opts)
	return ret, opts.DataOut, err
}

// Load loads spec into objs (a bpf2go Objects struct) with every map
// unpinned and the given replacements (by map name); a verifier rejection
// is reported with the verifier's log. Everything is closed when t ends.
func Load(t testing.TB, spec *ebpf.CollectionSpec, objs interface{ Close() error }, replace map[string]*ebpf.Map) {
	t.Helper()
	testenv.RequireRoot(t)
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	err := spec.LoadAndAssign(objs, &ebpf.CollectionOptions{MapReplacements: replace})
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		t.Fatalf("verifier rejected the programs:\n%+v", ve)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
}

// Endpoints is a fresh endpoint map (the shared contract) holding eps.
func Endpoints(t testing.TB, eps map[[4]byte]maps.EndpointInfo) *ebpf.Map {
	t.Helper()
	m, err := ebpf.NewMap(maps.EndpointsSpec())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	for ip, info := range eps {
		if err := m.Put(ip, info); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// Counters sums a per-CPU counters map index by index.
func Counters(t testing.TB, m *ebpf.Map) []uint64 {
	t.Helper()
	c, err := maps.Counters(m)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// RequireCounters fails t unless, between before and after, exactly the
// counters in want rose, each by its amount (names index names).
func RequireCounters(t testing.TB, names []string, before, after []uint64, want map[int]uint64) {
	t.Helper()
	for i := range after {
		if d := after[i] - before[i]; d != want[i] {
			name := fmt.Sprint(i)
			if i < len(names) {
				name = names[i]
			}
			t.Errorf("counter %s rose by %d, want %d", name, d, want[i])
		}
	}
}

// Netns is a private network namespace for a test's devices, routes and
// program runs (test_run resolves ifindexes, routes and neighbours in the
// caller's namespace). Only code passed to Do runs in it: subtests run on
// goroutines of their own, so a test cannot simply move its thread.
type Netns struct {
	fd int
}

// NewNetns makes a network namespace with lo up, released when t ends.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	testenv.RequireRoot(t)
	ns := &Netns{fd: -1}
	err := onThrowawayThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare a network namespace: %w", err)
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ns.fd = fd
		return linkUp("lo")
	})
	if ns.fd >= 0 {
		t.Cleanup(func() { unix.Close(ns.fd) })
	}
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	return ns
}

// Do runs fn on an OS thread inside the namespace; the thread is discarded
// afterwards, so it never runs anything else.
func (ns *Netns) Do(fn func() error) error {
	return onThrowawayThread(func() error {
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("setns: %w", err)
		}
		return fn()
	})
}

// Must is Do that fails t on error; call it from the test's goroutine.
func (ns *Netns) Must(t testing.TB, fn func() error) {
	t.Helper()
	if err := ns.Do(fn); err != nil {
		t.Fatal(err)
	}
}

// Run is Run inside the namespace.
func (ns *Netns) Run(prog *ebpf.Program, frame []byte, ctx SkbContext) (verdict uint32, out []byte, err error) {
	err = ns.Do(func() (err error) {
		verdict, out, err = Run(prog, frame, ctx)
		return err
	})
	return verdict, out, err
}

// Sysctl writes /proc/sys/<key> inside the namespace (net sysctls are
// resolved by the writing thread).
func (ns *Netns) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	ns.Must(t, func() error { return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644) })
}

func onThrowawayThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		errc <- fn()
	}()
	return <-errc
}

// linkUp sets a link up with an ioctl, in the calling thread's namespace.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
