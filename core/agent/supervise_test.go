package agent

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/datapathrpc"
)

// TestMain makes this test binary a fake braid plugin when the agent's
// code launches it with the handshake: a copy of it at some path crashes
// while <path>.crash exists, and reports the contents of <path>.version in
// Info.
func TestMain(m *testing.M) {
	if datapathrpc.Launched() {
		if _, err := os.Stat(os.Args[0] + ".crash"); err == nil {
			os.Exit(2)
		}
		version, _ := os.ReadFile(os.Args[0] + ".version")
		datapathrpc.Serve(&fakeServer{version: string(version)})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type fakeServer struct {
	datapathrpc.UnimplementedDatapathServer
	version string
}

func (s *fakeServer) Info(context.Context, *datapathrpc.Request) (*datapathrpc.InfoReply, error) {
	return &datapathrpc.InfoReply{Name: "fake", Version: s.version}, nil
}

// install copies this test binary to bin as a package manager would (a new
// file renamed over the old), with the version its Info reports.
func install(t *testing.T, bin, version string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(bin+".new", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin+".version", []byte(version), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
}

// TestSupervisor runs real go-plugin servers (this binary): a braid plugin
// that crashes at its first start is retried until it runs, a killed
// server is restarted, a replaced binary gets a new server, and every
// server's socket is in the socket folder given.
func TestSupervisor(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake")
	install(t, bin, "v1")
	if err := os.WriteFile(bin+".crash", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sockets := filepath.Join(dir, "sockets")
	if err := os.Mkdir(sockets, 0o700); err != nil {
		t.Fatal(err)
	}
	h := &hosted{name: "fake", bin: bin, socketDir: sockets, log: quiet()}
	if err := h.start(); err == nil {
		t.Fatal("a plugin that crashes started")
	}
	if !braidBuild(h.bin) {
		t.Fatal("the fake plugin is not a braid build: the agent would drop it")
	}

	ctx, cancel := context.WithCancel(context.Background())
	restarts := make(chan int, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.supervise(ctx, func(h *hosted) { restarts <- h.Pid() })
	}()
	t.Cleanup(func() { cancel(); <-done; h.stop() })
	restarted := func(what string, old int) int {
		t.Helper()
		select {
		case pid := <-restarts:
			if pid == 0 || pid == old {
				t.Fatalf("%s: server pid %d after the restart (was %d)", what, pid, old)
			}
			return pid
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no restart within 10s", what)
			return 0
		}
	}

	time.Sleep(3 * minBackoff) // a failed start or two
	if h.up() {
		t.Fatal("up while it crashes")
	}
	if err := os.Remove(bin + ".crash"); err != nil {
		t.Fatal(err)
	}
	pid := restarted("after the crashes stopped", 0)
	requireSocket(t, sockets)

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	pid = restarted("killed", pid)

	install(t, bin, "v2")
	replacedAt := time.Now()
	restarted("binary replaced", pid)
	if d := time.Since(replacedAt); d < settle {
		t.Errorf("restarted %v after the binary was replaced, before it settled (%v)", d, settle)
	}
	var version string
	err := h.call(ctx, 5*time.Second, func(ctx context.Context, c datapathrpc.DatapathClient) error {
		in, err := c.Info(ctx, h.request())
		version = in.GetVersion()
		return err
	})
	if err != nil || version != "v2" {
		t.Errorf("Info of the new server: version %q, %v; want v2", version, err)
	}
	requireSocket(t, sockets)
}

// requireSocket fails t unless dir holds a unix socket.
func requireSocket(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Type()&fs.ModeSocket != 0 {
			return
		}
	}
	t.Errorf("no server socket in %s: %v", dir, entries)
}
