package permissions

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
)

// TestAgentPermissions runs braid agent (local datastore) under umask 0,
// as a careless service manager might, with pods added meanwhile, and
// checks while it runs that nothing under stateDir, bpfRoot or its plugin
// servers' socket folder is open to group or other (go-plugin chmods no
// socket: their mode is the umask's), and that the folder is gone once the
// agent stops.
func TestAgentPermissions(t *testing.T) {
	harness.RequireRoot(t, "nsenter")
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	// The agent's parent-death signal follows the thread that starts it:
	// this one, never unlocked, ends with the test.
	runtime.LockOSThread()

	repo, err := harness.Repo()
	if err != nil {
		t.Fatal(err)
	}
	n := harness.New(t).AddNode(t)
	c := n.Conflist(t, "vxlan-lb.conflist", n.SockLB(t, nil))
	a := c.AddPod(t, "a")
	agent, done := startAgent(t, n, c.File, repo)

	servers := waitServers(t, agent.Process.Pid, 4)
	sockets := socketDir(t, servers)
	b := c.AddPod(t, "b")
	n.Braid(t, "service", "add", "web", "--vip", "198.18.100.10", "--port", "80", "--backend", b.IP.String()+":8080")
	time.Sleep(1500 * time.Millisecond) // the agent sees the change and reconciles (it polls the store each second)
	if err := a.Del(); err != nil {
		t.Fatalf("DEL: %v", err)
	}

	requireMode(t, sockets, 0o700)
	if got := countSockets(t, sockets); got != len(servers) {
		t.Errorf("%d sockets in %s, want one for each of the %d plugin servers", got, sockets, len(servers))
	}
	files := 0
	for _, root := range []string{n.StateDir, n.BPFRoot, sockets} {
		files += walk(t, root)
	}
	t.Logf("%d files and pins, %d sockets checked with the agent running", files, len(servers))

	if err := agent.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not stop within 10s of SIGTERM")
	}
	if _, err := os.Stat(sockets); !os.IsNotExist(err) {
		t.Errorf("socket folder %s after the agent stopped: %v, want it gone", sockets, err)
	}
}

// startAgent runs braid agent in n's netns for the conflist, logging to a
// private file, and returns it with a channel closed when it exits.
func startAgent(t *testing.T, n *harness.Node, conflist, repo string) (*exec.Cmd, chan struct{}) {
	t.Helper()
	bin := filepath.Join(repo, "bin")
	logPath := filepath.Join(n.Dir, "agent.log")
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command("nsenter", "--net="+n.NS.Path, harness.RepoBinary(t, "braid"), "agent",
		"--datastore", "local", "--conflist", conflist, "--cni-path", bin+":"+filepath.Join(bin, "tools", "cni"),
		"--metrics-address", "", "--state-dir", n.StateDir, "--bpf-root", n.BPFRoot)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("agent.log:\n%s", b)
		}
	})
	return cmd, done
}

// waitServers waits for want children of the agent (its plugin servers)
// and returns their pids.
func waitServers(t *testing.T, agent, want int) []int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		pids := harness.Children(agent)
		if len(pids) == want {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent has %d plugin servers after 15s, want %d", len(pids), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// socketDir is the folder the agent told its servers to make their sockets
// in (go-plugin's PLUGIN_UNIX_SOCKET_DIR): the same for all.
func socketDir(t *testing.T, servers []int) string {
	t.Helper()
	dirs := map[string]bool{}
	for _, pid := range servers {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		dir := ""
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("PLUGIN_UNIX_SOCKET_DIR=")); ok {
				dir = string(v)
			}
		}
		if dir == "" {
			t.Fatalf("plugin server %d has no PLUGIN_UNIX_SOCKET_DIR: its socket goes to the temporary folder", pid)
		}
		dirs[dir] = true
	}
	if len(dirs) != 1 {
		t.Fatalf("plugin servers' socket folders: %v, want one", dirs)
	}
	for dir := range dirs {
		return dir
	}
	return ""
}

func countSockets(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.Type()&fs.ModeSocket != 0 {
			n++
		}
	}
	return n
}
