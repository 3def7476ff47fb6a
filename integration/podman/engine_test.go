package podman

// A private podman for one test: its own containers.conf and storage.conf
// (passed by CONTAINERS_CONF and CONTAINERS_STORAGE_CONF; podman hands
// CONTAINERS_CONF on to conmon, and the storage paths as arguments of the
// cleanup command conmon runs when a container exits), its
// own graphroot, runroot, tmp dir and file locks, and a CNI config dir that
// holds only the braid conflist. Nothing of the machine's own podman setup
// (/etc/containers, /var/lib/containers/storage, /run/libpod, the shm lock
// segment) is read for state or written.
//
// Every podman command runs with the braid node's network namespace as its
// own (see the package comment), so conmon, the OCI runtime and the CNI
// plugins podman runs do too, as on a real node.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/testenv"
	"golang.org/x/sys/unix"
)

const (
	// testRoot holds each test's podman directory, bp-<topology>; it is
	// outside the topology's directory so that a crashed run's containers
	// can still be removed with its own configuration (harness.New removes
	// the topology's directory first thing).
	testRoot = "/run/braid-test"
	// cacheDir keeps the busybox-static package between runs.
	cacheDir = "/var/cache/braid-test"
	// image is the busybox image every test imports into its storage.
	image = "localhost/braid-busybox:test"
	// cniCacheDir is libcni's default cache, which podman 4 uses; its
	// entries are <network>-<container ID>-<ifname>.
	cniCacheDir = "/var/lib/cni/results"
	// commandTimeout bounds one podman command; a stop waits at most
	// stopTimeout for the container to exit before SIGKILL.
	commandTimeout = 90 * time.Second
	stopTimeout    = "5"
	// network is the name of every conflist in chain-configs/.
	network = "braid"
)

// engine is one test's podman.
type engine struct {
	t       *testing.T
	node    *harness.Node
	name    string // bp-<topology>: directory and cgroup parent
	dir     string // testRoot/<name>
	env     []string
	network string // the conflist's name
	netDir  string // podman's CNI config dir
	// CgroupParent is what containers run under (--cgroup-parent); its
	// cgroup2 directory is CgroupRoot, sock-lb's cgroupRoot.
	CgroupParent string
	CgroupRoot   string
	// Every container ID and sandbox netns seen, for cleanup and leak
	// checks.
	ids       []string
	sandboxes []string
	// containers.conf as written, and its path
	confPath, conf string
}

// requirePodman makes sure podman 4 (the last with a CNI network backend)
// and runc are installed, installing them from Debian when missing.
func requirePodman(t *testing.T) {
	t.Helper()
	harness.RequireRoot(t, "dpkg-deb")
	missing := false
	for _, tool := range []string{"podman", "runc", "conmon"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = true
		}
	}
	if missing {
		// The same as hack/deps.sh, for `go test` run on its own.
		if out, err := aptGet("", "install", "-y", "-q", "--no-install-recommends", "podman", "runc"); err != nil {
			testenv.Unavailable(t, "podman is not installed and apt-get cannot install it: %v\n%s", err, out)
		}
	}
	// Not `podman version`: that sets up the machine's default storage.
	out, err := exec.Command("podman", "--version").Output()
	if err != nil {
		testenv.Unavailable(t, "podman --version: %v", err)
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "podman version ")
	if major, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0]); major != 4 {
		testenv.Unavailable(t, "podman %s: the suite needs podman 4 (CNI network backend; Debian 12 ships 4.3)", v)
	}
}

// aptGet runs apt-get non-interactively in dir ("" for the current one),
// after an update when the package lists are missing or stale.
func aptGet(dir string, args ...string) ([]byte, error) {
	run := func(args ...string) ([]byte, error) {
		cmd := exec.Command("apt-get", append([]string{"-o", "APT::Sandbox::User=root"}, args...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Dir = dir
		return cmd.CombinedOutput()
	}
	out, err := run(args...)
	if err == nil {
		return out, nil
	}
	if uout, uerr := run("update", "-q"); uerr != nil {
		return append(out, uout...), uerr
	}
	return run(args...)
}

// newEngine prepares a private podman whose CNI config dir holds the
// node's conflist (the chain's file, named after its network), removes
// what a crashed earlier run of the same test left, and registers the
// removal of everything it makes. Call it after the node exists and before
// anything else that registers cleanup and needs the containers gone first.
func newEngine(t *testing.T, n *harness.Node) *engine {
	t.Helper()
	requirePodman(t)
	cg2 := testenv.Cgroup2()
	if cg2 == "" {
		testenv.Unavailable(t, "no cgroup v2 mount for sock-lb's cgroupRoot")
	}
	// The topology's name is the last part of the node's netns name.
	topo := strings.TrimSuffix(filepath.Base(n.Path), "-"+n.Name)
	name := "bp-" + topo
	e := &engine{
		t: t, node: n, name: name, dir: filepath.Join(testRoot, name),
		CgroupParent: "/" + name, CgroupRoot: filepath.Join(cg2, name),
	}
	e.netDir = filepath.Join(e.dir, "cni")
	confPath, storagePath := filepath.Join(e.dir, "containers.conf"), filepath.Join(e.dir, "storage.conf")
	e.env = append(os.Environ(), "CONTAINERS_CONF="+confPath, "CONTAINERS_STORAGE_CONF="+storagePath)

	createdVarLib := !exists("/var/lib/containers")
	e.removeLeftovers()
	t.Cleanup(func() {
		if err := e.teardown(); err != nil {
			t.Errorf("podman teardown: %v", err)
		}
		// `podman import` keeps a blob-info cache in the machine-wide
		// /var/lib/containers/cache whatever the storage configuration;
		// drop it when this test made it.
		if createdVarLib {
			_ = os.Remove("/var/lib/containers/cache/blob-info-cache-v1.boltdb")
			_ = os.Remove("/var/lib/containers/cache")
			_ = os.Remove("/var/lib/containers")
		}
	})

	for _, d := range []string{e.netDir, filepath.Join(e.dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(e.CgroupRoot, 0o755); err != nil {
		testenv.Unavailable(t, "cannot make cgroup %s: %v", e.CgroupRoot, err)
	}
	repo, err := harness.Repo()
	if err != nil {
		t.Fatal(err)
	}
	var nofile, nproc unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile); err != nil {
		t.Fatal(err)
	}
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &nproc); err != nil {
		t.Fatal(err)
	}
	q := strconv.Quote
	conf := strings.Join([]string{
		"[containers]",
		// podman's own defaults ask for more than an unprivileged limit
		// allows (runc then fails with EPERM): stay within ours.
		fmt.Sprintf("default_ulimits = [%s, %s]",
			q(fmt.Sprintf("nofile=%d:%d", min(nofile.Max, 1024), min(nofile.Max, 1024))),
			q(fmt.Sprintf("nproc=%d:%d", min(nproc.Max, 1024), min(nproc.Max, 1024)))),
		"",
		"[engine]",
		`runtime = "runc"`,            // crun fails on a hybrid cgroup layout
		`cgroup_manager = "cgroupfs"`, // no systemd
		`events_logger = "file"`,      // no journald
		`lock_type = "file"`,          // not the machine-wide shm lock segment
		"tmp_dir = " + q(filepath.Join(e.dir, "tmp")),
		"events_logfile_path = " + q(filepath.Join(e.dir, "tmp", "events.log")),
		"image_copy_tmp_dir = " + q(filepath.Join(e.dir, "tmp")),
		"volume_path = " + q(filepath.Join(e.dir, "volumes")),
		"",
		"[network]",
		`network_backend = "cni"`,
		"network_config_dir = " + q(e.netDir),
		"cni_plugin_dirs = [" + q(filepath.Join(repo, "bin")) + "]",
		// The conflist's name, as README.md suggests (most of the suite
		// still says --network); SetDefaultNetwork changes it.
		"default_network = " + q(network),
		"",
	}, "\n")
	storage := strings.Join([]string{
		"[storage]",
		`driver = "vfs"`,
		"graphroot = " + q(filepath.Join(e.dir, "graph")),
		"runroot = " + q(filepath.Join(e.dir, "run")),
		"",
	}, "\n")
	e.confPath, e.conf = confPath, conf
	for path, content := range map[string]string{confPath: conf, storagePath: storage} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// SetDefaultNetwork rewrites containers.conf with name as the default
// network (podman's own "podman" when name is "").
func (e *engine) SetDefaultNetwork(name string) {
	e.t.Helper()
	var lines []string
	for _, l := range strings.Split(e.conf, "\n") {
		if !strings.HasPrefix(l, "default_network = ") {
			lines = append(lines, l)
		} else if name != "" {
			lines = append(lines, "default_network = "+strconv.Quote(name))
		}
	}
	e.conf = strings.Join(lines, "\n")
	if err := os.WriteFile(e.confPath, []byte(e.conf), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// AddNetwork puts the chain's conflist into podman's CNI config dir.
func (e *engine) AddNetwork(c *harness.Chain) {
	e.t.Helper()
	raw, err := os.ReadFile(c.File)
	if err != nil {
		e.t.Fatal(err)
	}
	if c.List.Name != network {
		e.t.Fatalf("%s names its network %q; the engine's default_network is %q", c.File, c.List.Name, network)
	}
	e.network = c.List.Name
	if err := os.WriteFile(e.ConflistPath(), raw, 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// ConflistPath is where the network's conflist is in podman's config dir.
func (e *engine) ConflistPath() string {
	return filepath.Join(e.netDir, e.network+".conflist")
}

// Run runs podman with args inside the node's netns and returns its
// trimmed stdout; the error carries stderr.
func (e *engine) Run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = e.env, &stdout, &stderr
	err := e.node.Do(cmd.Run)
	out := strings.TrimSpace(stdout.String())
	if err != nil {
		return out, fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// Must is Run failing the test on error.
func (e *engine) Must(t testing.TB, args ...string) string {
	t.Helper()
	out, err := e.Run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ImportBusybox builds a busybox rootfs from Debian's busybox-static
// package (downloaded once into cacheDir) and imports it as image.
func (e *engine) ImportBusybox(t testing.TB) {
	t.Helper()
	deb := busyboxDeb(t)
	tarball := filepath.Join(e.dir, "busybox.tar")
	if err := buildRootfs(deb, filepath.Join(e.dir, "busybox-deb"), tarball); err != nil {
		t.Fatalf("busybox rootfs from %s: %v", deb, err)
	}
	e.Must(t, "import", "--quiet", tarball, image)
}

// Container is what the suite reads of `podman container inspect`.
type Container struct {
	ID    string `json:"Id"`
	Name  string
	State struct {
		Status string
		Pid    int
	}
	NetworkSettings struct {
		SandboxKey string
		Networks   map[string]struct {
			IPAddress   string
			IPPrefixLen int
			Gateway     string
			MacAddress  string
		}
	}
}

// Inspect returns the container's state, and remembers its ID and sandbox.
func (e *engine) Inspect(t testing.TB, name string) Container {
	t.Helper()
	var cs []Container
	if err := json.Unmarshal([]byte(e.Must(t, "container", "inspect", name)), &cs); err != nil || len(cs) != 1 {
		t.Fatalf("podman container inspect %s: %v (%d containers)", name, err, len(cs))
	}
	c := cs[0]
	if !slices.Contains(e.ids, c.ID) {
		e.ids = append(e.ids, c.ID)
	}
	if sb := c.NetworkSettings.SandboxKey; sb != "" && !slices.Contains(e.sandboxes, sb) {
		e.sandboxes = append(e.sandboxes, sb)
	}
	return c
}

// CNICacheEntries lists libcni's cached results of the engine's network.
func (e *engine) CNICacheEntries() []string {
	names, _ := filepath.Glob(filepath.Join(cniCacheDir, e.network+"-*"))
	var out []string
	for _, p := range names {
		for _, id := range e.ids {
			if strings.HasPrefix(filepath.Base(p), e.network+"-"+id+"-") {
				out = append(out, p)
			}
		}
	}
	return out
}

// LiveSandboxes lists the container netns files podman made that still
// exist.
func (e *engine) LiveSandboxes() []string {
	var out []string
	for _, sb := range e.sandboxes {
		if exists(sb) {
			out = append(out, sb)
		}
	}
	return out
}

// ContainerCgroups lists the container cgroups left under the parent, in
// the cgroup2 hierarchy and every v1 one.
func (e *engine) ContainerCgroups() []string {
	var out []string
	for _, root := range cgroupHierarchies() {
		m, _ := filepath.Glob(filepath.Join(root, e.name, "libpod-*"))
		out = append(out, m...)
	}
	return out
}

// teardown removes every container (their network with them), then what
// podman could not: sandbox netns files, libcni cache entries, cgroups,
// mounts and the directory.
func (e *engine) teardown() error {
	var errs []error
	if exists(filepath.Join(e.dir, "containers.conf")) {
		if _, err := e.Run("rm", "--all", "--force", "--time", "0"); err != nil {
			errs = append(errs, err)
		}
	}
	for _, sb := range e.LiveSandboxes() {
		errs = append(errs, removeNetnsFile(sb))
	}
	for _, p := range e.CNICacheEntries() {
		errs = append(errs, os.Remove(p))
	}
	errs = append(errs, e.removeState())
	return errors.Join(errs...)
}

// removeLeftovers removes what a crashed earlier run of the same test
// left: its containers, their netns files and libcni cache entries,
// cgroups, mounts and files. Its containers are removed with its own
// configuration, but without its networks: their node (netns, store, bpffs)
// is gone, and CNI DEL must not run in the host netns instead.
func (e *engine) removeLeftovers() {
	if exists(filepath.Join(e.dir, "containers.conf")) {
		podman := func(args ...string) string {
			ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, "podman", args...)
			cmd.Env = e.env
			out, _ := cmd.Output() // best effort: the state below goes anyway
			return string(out)
		}
		var cs []Container
		if ids := strings.Fields(podman("ps", "--all", "--quiet", "--no-trunc")); len(ids) > 0 {
			_ = json.Unmarshal([]byte(podman(append([]string{"container", "inspect"}, ids...)...)), &cs)
		}
		for _, c := range cs {
			e.ids = append(e.ids, c.ID)
			if c.NetworkSettings.SandboxKey != "" {
				e.sandboxes = append(e.sandboxes, c.NetworkSettings.SandboxKey)
			}
			for nw := range c.NetworkSettings.Networks {
				e.network = nw
			}
		}
		confs, _ := filepath.Glob(filepath.Join(e.dir, "cni", "*.conflist"))
		for _, f := range confs {
			_ = os.Remove(f)
		}
		podman("rm", "--all", "--force", "--time", "0")
		for _, sb := range e.LiveSandboxes() {
			_ = removeNetnsFile(sb)
		}
		for _, p := range e.CNICacheEntries() {
			_ = os.Remove(p)
		}
		e.ids, e.sandboxes, e.network = nil, nil, ""
	}
	if err := e.removeState(); err != nil {
		e.t.Fatalf("remove leftovers of an earlier run: %v", err)
	}
}

// removeState kills what runs in the engine's cgroups, removes them, and
// unmounts and removes the engine's directory.
func (e *engine) removeState() error {
	var errs []error
	for _, root := range cgroupHierarchies() {
		errs = append(errs, removeCgroupTree(filepath.Join(root, e.name)))
	}
	mounts, err := harness.MountsUnder(e.dir)
	errs = append(errs, err)
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	errs = append(errs, os.RemoveAll(e.dir))
	return errors.Join(errs...)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// removeNetnsFile unmounts and removes a named netns file.
func removeNetnsFile(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
