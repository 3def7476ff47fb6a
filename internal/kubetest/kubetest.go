// Package kubetest runs a real Kubernetes control plane for braid's tests:
// etcd and kube-apiserver (optionally kube-controller-manager), the
// binaries hack/k8s-build.sh builds at the pinned release, on loopback at
// free ports, with token authentication and RBAC on as in a cluster (and
// --allow-privileged, which real clusters set for their network's
// DaemonSet). A test gets an admin clientset, and kubeconfigs for any
// ServiceAccount (a TokenRequest token), so that code run with the
// ClusterRole braid ships is refused exactly what a cluster would refuse.
//
// The binaries are found in $BRAID_K8S_BIN (the Makefile sets it), else in
// the build script's default cache; a missing one skips the test, or fails
// it under CI=true. Every process is stopped and every file removed when
// the test ends, failed or not; a crashed test's processes die with it
// (parent-death signal).
package kubetest

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/braid-cni/braid/internal/testenv"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Options change the control plane New starts.
type Options struct {
	// ServiceCIDR is --service-cluster-ip-range (10.96.0.0/16 when empty).
	ServiceCIDR string
	// ControllerManager also runs kube-controller-manager: it allocates
	// Nodes' spec.podCIDR from ClusterCIDR (/NodeCIDRMaskSize, 24 when 0)
	// and turns Pods into EndpointSlices, as a kubelet cluster needs.
	ControllerManager bool
	ClusterCIDR       string
	NodeCIDRMaskSize  int
	// APIServerArgs are appended to kube-apiserver's flags.
	APIServerArgs []string
}

// Cluster is a running control plane.
type Cluster struct {
	Dir    string // every file of the control plane; removed by Close
	Port   int    // kube-apiserver's secure port on 127.0.0.1
	Config *rest.Config
	Client kubernetes.Interface // admin (system:masters)
	Dyn    dynamic.Interface    // admin

	opts      Options
	token     string // the admin's bearer token
	spawn     spawner
	etcd      *proc
	apiserver *proc
	kcm       *proc
}

// New starts a control plane in a temporary directory for t and stops it
// when t ends. It needs root only for what the test does with it.
func New(t testing.TB, o Options) *Cluster {
	t.Helper()
	RequireBinaries(t, binsFor(o)...)
	if _, err := exec.LookPath("etcd"); err != nil {
		testenv.Unavailable(t, "no etcd in PATH (Debian's etcd-server)")
	}
	c, err := Start(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.LogTails())
		}
		if err := c.Close(); err != nil {
			t.Errorf("stop the control plane: %v", err)
		}
	})
	return c
}

func binsFor(o Options) []string {
	if o.ControllerManager {
		return []string{"kube-apiserver", "kube-controller-manager"}
	}
	return []string{"kube-apiserver"}
}

// Start starts a control plane with its files in dir (which must exist
// and is removed by Close). Use it where no testing.TB lives as long as
// the cluster (TestMain); check the binaries with BinaryError first.
func Start(dir string, o Options) (c *Cluster, err error) {
	if o.ServiceCIDR == "" {
		o.ServiceCIDR = "10.96.0.0/16"
	}
	if o.NodeCIDRMaskSize == 0 {
		o.NodeCIDRMaskSize = 24
	}
	c = &Cluster{Dir: dir, opts: o, spawn: newSpawner()}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, c.LogTails())
			_ = c.Close()
		}
	}()
	if err := c.writeSecrets(); err != nil {
		return nil, err
	}
	if err := c.startEtcd(); err != nil {
		return nil, err
	}
	if c.Port, err = freePort(); err != nil {
		return nil, err
	}
	c.Config = c.RESTConfig(c.token)
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	if c.Dyn, err = dynamic.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	if err := c.StartAPIServer(); err != nil {
		return nil, err
	}
	if o.ControllerManager {
		if err := c.startControllerManager(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Close stops every process (controller manager, API server, etcd, in that
// order) and removes Dir.
func (c *Cluster) Close() error {
	var errs []error
	for _, p := range []*proc{c.kcm, c.apiserver, c.etcd} {
		errs = append(errs, p.stop())
	}
	if c.spawn != nil {
		close(c.spawn)
		c.spawn = nil
	}
	errs = append(errs, os.RemoveAll(c.Dir))
	return errors.Join(errs...)
}

// Server is the API server's URL on loopback.
func (c *Cluster) Server() string { return "https://127.0.0.1:" + strconv.Itoa(c.Port) }

// Address is the API server's host:port on loopback.
func (c *Cluster) Address() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)) }

// RESTConfig is a client config for the API server with a bearer token.
// The serving certificate is the API server's own self-signed one, so TLS
// is not verified (loopback, and the test made the server).
func (c *Cluster) RESTConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            c.Server(),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             200,
		Burst:           400,
		Timeout:         30 * time.Second,
	}
}

// writeSecrets makes the admin token file and the ServiceAccount signing
// key pair.
func (c *Cluster) writeSecrets() error {
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	c.token = hex.EncodeToString(tok)
	if err := os.WriteFile(c.path("tokens.csv"), []byte(c.token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	return errors.Join(
		os.WriteFile(c.path("sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600),
		os.WriteFile(c.path("sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644))
}

func (c *Cluster) path(name string) string { return filepath.Join(c.Dir, name) }

func (c *Cluster) startEtcd() error {
	client, err := freePort()
	if err != nil {
		return err
	}
	peer, err := freePort()
	if err != nil {
		return err
	}
	cu := fmt.Sprintf("http://127.0.0.1:%d", client)
	pu := fmt.Sprintf("http://127.0.0.1:%d", peer)
	c.etcd, err = c.start("etcd", "etcd", "--name", "kubetest", "--data-dir", c.path("etcd"),
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
		"--initial-cluster", "kubetest="+pu)
	if err != nil {
		return err
	}
	c.etcd.url = cu
	return waitFor(30*time.Second, "etcd to answer", func() error {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", client), time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	}, c.etcd)
}

// StartAPIServer starts kube-apiserver (again, after StopAPIServer: same
// etcd, port and keys) and waits until /readyz says ok.
func (c *Cluster) StartAPIServer() error {
	bin, err := Binary("kube-apiserver")
	if err != nil {
		return err
	}
	args := []string{
		"--etcd-servers=" + c.etcd.url,
		"--secure-port=" + strconv.Itoa(c.Port), "--bind-address=127.0.0.1",
		"--cert-dir=" + c.path("certs"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + c.path("sa.pub"),
		"--service-account-signing-key-file=" + c.path("sa.key"),
		"--service-cluster-ip-range=" + c.opts.ServiceCIDR,
		"--authorization-mode=Node,RBAC",
		"--token-auth-file=" + c.path("tokens.csv"),
		"--allow-privileged=true",
		"--kubelet-preferred-address-types=InternalIP",
	}
	c.apiserver, err = c.start("kube-apiserver", bin, append(args, c.opts.APIServerArgs...)...)
	if err != nil {
		return err
	}
	return c.WaitReady(90 * time.Second)
}

// StopAPIServer kills kube-apiserver, as a crash or a lost control-plane
// node does (a SIGTERM would drain open watches for up to a minute); etcd
// keeps the cluster's objects for StartAPIServer.
func (c *Cluster) StopAPIServer() error {
	if c.apiserver == nil {
		return nil
	}
	_ = c.apiserver.cmd.Process.Kill()
	<-c.apiserver.done
	c.apiserver = nil
	return nil
}

// APIServerRunning reports whether kube-apiserver is started (and has not
// exited).
func (c *Cluster) APIServerRunning() bool { return c.apiserver != nil && c.apiserver.exited() == nil }

// WaitReady waits up to timeout for /readyz to answer ok.
func (c *Cluster) WaitReady(timeout time.Duration) error {
	return waitFor(timeout, "kube-apiserver's /readyz", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return err
		}
		if string(b) != "ok" {
			return fmt.Errorf("/readyz: %s", b)
		}
		return nil
	}, c.apiserver)
}

func (c *Cluster) startControllerManager() error {
	bin, err := Binary("kube-controller-manager")
	if err != nil {
		return err
	}
	kc := c.path("admin.kubeconfig")
	if err := c.WriteKubeconfig(kc, c.Server(), c.token); err != nil {
		return err
	}
	c.kcm, err = c.start("kube-controller-manager", bin,
		"--kubeconfig="+kc, "--leader-elect=false", "--secure-port=0",
		"--controllers=*",
		"--allocate-node-cidrs=true", "--cluster-cidr="+c.opts.ClusterCIDR,
		"--node-cidr-mask-size="+strconv.Itoa(c.opts.NodeCIDRMaskSize),
		"--service-cluster-ip-range="+c.opts.ServiceCIDR,
		"--service-account-private-key-file="+c.path("sa.key"),
		"--use-service-account-credentials=false")
	return err
}

// LogTails is the end of every process's log, for a failed test.
func (c *Cluster) LogTails() string {
	var b strings.Builder
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		data, err := os.ReadFile(c.path(name + ".log"))
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		fmt.Fprintf(&b, "last lines of %s.log:\n%s\n", name, strings.Join(lines[max(0, len(lines)-25):], "\n"))
	}
	return b.String()
}

// proc is one control-plane process.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when it exits
	url  string        // etcd's client URL
}

// start runs bin with args, logging to Dir/<name>.log (appended across
// restarts).
func (c *Cluster) start(name, bin string, args ...string) (*proc, error) {
	log, err := os.OpenFile(c.path(name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	p := &proc{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.spawn.start(p.cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// exited reports whether p is gone (with its exit status).
func (p *proc) exited() error {
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v", p.name, p.cmd.ProcessState)
	default:
		return nil
	}
}

// stop sends SIGTERM and waits up to 15 s, then kills.
func (p *proc) stop() error {
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within 15s of SIGTERM", p.name)
	}
}

// spawner starts processes from one OS thread that lives as long as the
// cluster: the parent-death signal follows the thread that forked, and Go
// ends threads that a goroutine left locked (netns helpers do).
type spawner chan func()

func newSpawner() spawner {
	s := make(spawner)
	go func() {
		runtime.LockOSThread()
		for fn := range s {
			fn()
		}
	}()
	return s
}

func (s spawner) start(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	s <- func() { errc <- cmd.Start() }
	return <-errc
}

// waitFor retries fn until it succeeds, p exits or timeout passes.
func waitFor(timeout time.Duration, what string, fn func() error, p *proc) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if perr := p.exited(); perr != nil {
			return fmt.Errorf("waiting for %s: %w", what, perr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %s for %s: %w", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePort is a TCP port on 127.0.0.1 that nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Binary is the path of a Kubernetes command in the cache.
func Binary(name string) (string, error) {
	dir, err := BinDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no %s in %s (make k8s-bins builds it): %w", name, dir, err)
	}
	return p, nil
}

// BinDir is $BRAID_K8S_BIN, else hack/k8s-build.sh's default cache for the
// release hack/k8s pins.
func BinDir() (string, error) {
	if d := os.Getenv("BRAID_K8S_BIN"); d != "" {
		return d, nil
	}
	release, err := release()
	if err != nil {
		return "", err
	}
	cache := os.Getenv("BRAID_CACHE")
	if cache == "" {
		cache = "/var/cache/braid"
	}
	return filepath.Join(cache, "k8s", release, "bin"), nil
}

// release is the k8s.io/kubernetes version hack/k8s/go.mod requires.
func release() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		f, err := os.Open(filepath.Join(dir, "hack", "k8s", "go.mod"))
		if err == nil {
			defer f.Close()
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if fs := strings.Fields(sc.Text()); len(fs) == 3 && fs[0] == "require" && fs[1] == "k8s.io/kubernetes" {
					return fs[2], nil
				}
			}
			return "", fmt.Errorf("%s requires no k8s.io/kubernetes", f.Name())
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no hack/k8s/go.mod above the working directory")
		}
		dir = parent
	}
}

// BinaryError says why a command is unusable, or nil.
func BinaryError(names ...string) error {
	for _, n := range names {
		if _, err := Binary(n); err != nil {
			return err
		}
	}
	return nil
}

// RequireBinaries stops t (skip, or fail under CI=true) when a command is
// not built.
func RequireBinaries(t testing.TB, names ...string) {
	t.Helper()
	if err := BinaryError(names...); err != nil {
		testenv.Unavailable(t, "%v", err)
	}
}
