package bpffs_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/braid-cni/braid/core/bpffs"
	"github.com/braid-cni/braid/internal/testenv"
	"golang.org/x/sys/unix"
)

// mountsAt lists the filesystem types mounted exactly at path.
func mountsAt(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var types []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source opts
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if len(fields) > 4 && sep > 0 && sep+1 < len(fields) && fields[4] == path {
			types = append(types, fields[sep+1])
		}
	}
	return types
}

// ensure runs bpffs.Ensure and unmounts what it mounted on dir when t ends.
func ensure(t *testing.T, dir string) {
	t.Helper()
	if err := bpffs.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range mountsAt(t, dir) {
			testenv.Unmount(t, dir)
		}
	})
}

func TestIsMounted(t *testing.T) {
	if bpffs.IsMounted(t.TempDir()) {
		t.Error("a plain temporary directory is reported as a bpffs")
	}
	if bpffs.IsMounted(filepath.Join(t.TempDir(), "absent")) {
		t.Error("an absent path is reported as a bpffs")
	}
	root := testenv.BPFFS(t)
	if !bpffs.IsMounted(root) {
		t.Errorf("%s is a bpffs but IsMounted says no", root)
	}
	sub := filepath.Join(root, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if !bpffs.IsMounted(sub) {
		t.Error("a directory inside a bpffs is reported as not on one")
	}
}

func TestEnsureMountsOwnBPFFS(t *testing.T) {
	testenv.RequireRoot(t)
	root := filepath.Join(t.TempDir(), "node1", "bpf") // does not exist yet
	ensure(t, root)
	if !bpffs.IsMounted(root) {
		t.Fatalf("%s is not a bpffs after Ensure", root)
	}
	if got := mountsAt(t, root); !slices.Equal(got, []string{"bpf"}) {
		t.Fatalf("mounts at %s: %v, want one bpf", root, got)
	}
	if err := bpffs.Ensure(root); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	if got := mountsAt(t, root); len(got) != 1 {
		t.Errorf("Ensure is not idempotent: mounts at %s: %v", root, got)
	}
}

// Each test node has its own bpffs: two roots must not share pins.
func TestEnsureSeparateNodes(t *testing.T) {
	testenv.RequireRoot(t)
	base := t.TempDir()
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	ensure(t, a)
	ensure(t, b)
	if err := os.Mkdir(filepath.Join(a, "only-in-a"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(b, "only-in-a")); err == nil {
		t.Error("the two node roots share one bpffs")
	}
}

const childEnv = "BRAID_BPFFS_TEST_CHILD"

// Under /sys/fs/bpf, Ensure mounts the host's bpffs at /sys/fs/bpf and makes
// bpfRoot a folder in it. This runs in a child in a private mount namespace
// (over a tmpfs on /sys/fs/bpf), so the host's mounts are never touched.
func TestEnsureUnderSysFSBPF(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		testenv.RequireRoot(t)
		cmd := exec.Command(os.Args[0], "-test.run=^TestEnsureUnderSysFSBPF$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS} // and / made rprivate
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		t.Logf("child:\n%s", out)
		if strings.Contains(string(out), "--- SKIP") {
			t.Skipf("child skipped:\n%s", out)
		}
		return
	}

	if err := os.MkdirAll("/sys/fs/bpf", 0o755); err != nil {
		testenv.Unavailable(t, "no /sys/fs/bpf: %v", err)
	}
	if err := unix.Mount("tmpfs", "/sys/fs/bpf", "tmpfs", 0, ""); err != nil {
		t.Fatalf("isolate /sys/fs/bpf: %v", err)
	}
	root := "/sys/fs/bpf/braid"
	for range 2 { // idempotent
		if err := bpffs.Ensure(root); err != nil {
			t.Fatal(err)
		}
	}
	if got := mountsAt(t, "/sys/fs/bpf"); !slices.Equal(got, []string{"tmpfs", "bpf"}) {
		t.Errorf("mounts at /sys/fs/bpf: %v, want the test's tmpfs then one bpf", got)
	}
	if got := mountsAt(t, root); len(got) != 0 {
		t.Errorf("Ensure mounted on %s itself: %v", root, got)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() || !bpffs.IsMounted(root) {
		t.Errorf("%s is not a folder on bpffs: %v", root, err)
	}
}

func TestPluginDirAndLinkPins(t *testing.T) {
	root := t.TempDir() // layout helpers work on any directory
	names, err := bpffs.LinkPins(root, "veth-ebpf")
	if err != nil || names != nil {
		t.Fatalf("LinkPins without a plugin folder = %v, %v; want nothing", names, err)
	}
	dir, err := bpffs.PluginDir(root, "veth-ebpf")
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(root, "veth-ebpf") {
		t.Errorf("PluginDir = %s", dir)
	}
	if _, err := bpffs.PluginDir(root, "veth-ebpf"); err != nil {
		t.Errorf("PluginDir is not idempotent: %v", err)
	}
	if names, err := bpffs.LinkPins(root, "veth-ebpf"); err != nil || len(names) != 0 {
		t.Errorf("LinkPins of an empty folder = %v, %v", names, err)
	}

	pin := bpffs.LinkPin(root, "veth-ebpf", "brd1_ingress")
	if pin != filepath.Join(root, "veth-ebpf", "links", "brd1_ingress") {
		t.Errorf("LinkPin = %s", pin)
	}
	for _, n := range []string{"brd1_ingress", "brd1_egress"} {
		if err := os.WriteFile(bpffs.LinkPin(root, "veth-ebpf", n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	names, err = bpffs.LinkPins(root, "veth-ebpf")
	slices.Sort(names)
	if err != nil || !slices.Equal(names, []string{"brd1_egress", "brd1_ingress"}) {
		t.Errorf("LinkPins = %v, %v", names, err)
	}

	if err := bpffs.Remove(pin); err != nil {
		t.Errorf("Remove: %v", err)
	}
	if _, err := os.Stat(pin); !os.IsNotExist(err) {
		t.Errorf("pin still there after Remove: %v", err)
	}
	if err := bpffs.Remove(pin); err != nil {
		t.Errorf("Remove of an absent pin: %v", err)
	}
	if err := bpffs.Remove(dir); err == nil {
		t.Error("Remove of a non-empty folder succeeded")
	}
}

// CNI calls racing on a fresh node must end up with one bpffs, not a stack
// of them (pins in a covered mount would be lost from view).
func TestEnsureConcurrent(t *testing.T) {
	testenv.RequireRoot(t)
	root := filepath.Join(t.TempDir(), "bpf")
	t.Cleanup(func() {
		for range mountsAt(t, root) {
			testenv.Unmount(t, root)
		}
	})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() { errs <- bpffs.Ensure(root) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := mountsAt(t, root); len(got) != 1 {
		t.Errorf("mounts at %s after concurrent Ensure: %v, want one bpf", root, got)
	}
}
