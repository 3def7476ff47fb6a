package podman

// The machine-side pieces of the suite: the busybox image's rootfs, cgroup
// trees podman's cgroupfs manager makes, and mounts.

import (
	"archive/tar"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/braid-cni/braid/internal/testenv"
	"golang.org/x/sys/unix"
)

// busyboxDeb returns Debian's busybox-static package, downloading it into
// cacheDir once (it is not installed: only its binary is used).
func busyboxDeb(t testing.TB) string {
	t.Helper()
	if debs, _ := filepath.Glob(filepath.Join(cacheDir, "busybox-static_*.deb")); len(debs) > 0 {
		return debs[len(debs)-1]
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Downloaded into a fresh folder and moved, so that an interrupted
	// download is never taken for the package.
	tmp, err := os.MkdirTemp(cacheDir, "download-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	if out, err := aptGet(tmp, "download", "busybox-static"); err != nil {
		testenv.Unavailable(t, "apt-get download busybox-static: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "busybox-static_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("apt-get download busybox-static left %v", debs)
	}
	dst := filepath.Join(cacheDir, filepath.Base(debs[0]))
	if err := os.Rename(debs[0], dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

// buildRootfs extracts the busybox-static package into work and writes a
// rootfs tarball: /bin/busybox with a symlink per applet, and the few
// files and folders a container expects.
func buildRootfs(deb, work, tarball string) error {
	if out, err := exec.Command("dpkg-deb", "-x", deb, work).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x: %w: %s", err, out)
	}
	bin := filepath.Join(work, "bin", "busybox")
	// The binary is static: it runs here to list its applets.
	list, err := exec.Command(bin, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	body, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	f, err := os.Create(tarball)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	now := time.Now()
	add := func(h *tar.Header, data []byte) error {
		h.ModTime, h.Uname, h.Gname = now, "root", "root"
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	var errs []error
	for _, d := range []string{"bin", "dev", "etc", "proc", "root", "run", "sys", "tmp"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		errs = append(errs, add(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode}, nil))
	}
	errs = append(errs, add(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(body))}, body))
	for _, applet := range strings.Fields(string(list)) {
		if applet != "busybox" && !strings.Contains(applet, "/") {
			errs = append(errs, add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777}, nil))
		}
	}
	for name, content := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":  "root:x:0:\n",
	} {
		errs = append(errs, add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))}, []byte(content)))
	}
	errs = append(errs, tw.Close())
	return errors.Join(errs...)
}

// cgroupHierarchies are the machine's cgroup mounts: the cgroup2 one and,
// on a hybrid layout, every v1 hierarchy (the cgroupfs manager makes a
// container's cgroup in each).
func cgroupHierarchies() []string {
	var out []string
	if cg2 := testenv.Cgroup2(); cg2 != "" {
		out = append(out, cg2)
	}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		p := filepath.Join("/sys/fs/cgroup", e.Name())
		var st unix.Statfs_t
		if e.IsDir() && unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP_SUPER_MAGIC {
			out = append(out, p)
		}
	}
	return out
}

// removeCgroupTree kills every process in the cgroup at path and below
// (cgroup.kill on cgroup2, SIGKILL per process on v1) and removes the
// cgroups, deepest first. Absent is fine.
func removeCgroupTree(path string) error {
	var dirs []string
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return err
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if testenv.Cgroup2() != "" && strings.HasPrefix(path, testenv.Cgroup2()+"/") {
		return testenv.RemoveCgroup(path)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var pids []int
		for _, d := range dirs {
			pids = append(pids, cgroupProcs(d)...)
		}
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still has processes %v", path, pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	slices.Reverse(dirs)
	for _, d := range dirs {
		if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove cgroup %s: %w", d, err)
		}
	}
	return nil
}

func cgroupProcs(dir string) []int {
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}
