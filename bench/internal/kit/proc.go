// Package kit is what every braid benchmark shares: running tools inside
// network namespaces (pinned to CPUs, in a cgroup), the latency, connect
// rate and throughput measurements, and the Markdown report pieces.
package kit

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// NSPath is where `ip netns add` puts a named network namespace.
func NSPath(name string) string { return "/run/netns/" + name }

// In is where a command runs: a named netns ("" for the current one), CPUs
// to pin it to and a cgroup directory to start it in; all optional.
type In struct {
	NS, CPUs, Cgroup string
}

// NS is In for a named netns alone.
func NS(name string) In { return In{NS: name} }

// command builds argv for in. taskset and nsenter both exec, so the process
// keeps one pid and dies with the bench (Pdeathsig). The returned func
// closes the cgroup's fd once the process has started.
func (in In) command(ctx context.Context, name string, args ...string) (*exec.Cmd, func(), error) {
	var argv []string
	if in.CPUs != "" {
		argv = append(argv, "taskset", "-c", in.CPUs)
	}
	if in.NS != "" {
		argv = append(argv, "nsenter", "--net="+NSPath(in.NS))
	}
	argv = append(append(argv, name), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	if in.Cgroup == "" {
		return cmd, func() {}, nil
	}
	dir, err := os.Open(in.Cgroup)
	if err != nil {
		return nil, nil, err
	}
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(dir.Fd())
	return cmd, func() { dir.Close() }, nil
}

// Run runs a command to completion, bounded by timeout, and returns its
// stdout; a failure carries stderr.
func (in In) Run(ctx context.Context, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd, started, err := in.command(ctx, name, args...)
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Start()
	started()
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("timed out after %s", timeout)
		}
		detail := stderr.String()
		if strings.TrimSpace(detail) == "" {
			detail = stdout.String() // iperf3 -J reports errors on stdout
		}
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, LastLines(detail, 5))
	}
	return stdout.String(), nil
}

// Sh runs a command in the current netns with a short bound.
func Sh(ctx context.Context, name string, args ...string) error {
	_, err := In{}.Run(ctx, 30*time.Second, name, args...)
	return err
}

// Server is a long-running process (sockperf, iperf3, connrate) serving
// one measurement.
type Server struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	exited chan error
}

// StartServer starts a server and waits, bounded, until it listens on TCP
// port (read from /proc/<pid>/net/tcp, which shows the process's netns).
// udp: wait for a UDP socket bound to port instead.
func (in In) StartServer(ctx context.Context, port int, name string, args ...string) (*Server, error) {
	return in.start(ctx, "tcp", port, name, args...)
}

// StartUDPServer is StartServer for a server that binds a UDP port.
func (in In) StartUDPServer(ctx context.Context, port int, name string, args ...string) (*Server, error) {
	return in.start(ctx, "udp", port, name, args...)
}

func (in In) start(ctx context.Context, proto string, port int, name string, args ...string) (*Server, error) {
	cmd, started, err := in.command(ctx, name, args...)
	if err != nil {
		return nil, err
	}
	s := &Server{cmd: cmd, exited: make(chan error, 1)}
	s.cmd.Stderr = &s.stderr
	err = s.cmd.Start()
	started()
	if err != nil {
		return nil, err
	}
	go func() { s.exited <- s.cmd.Wait() }()
	deadline := time.After(5 * time.Second)
	for {
		if bound(s.cmd.Process.Pid, proto, port) {
			return s, nil
		}
		select {
		case err := <-s.exited:
			return nil, fmt.Errorf("%s exited before listening: %v: %s", name, err, LastLines(s.stderr.String(), 5))
		case <-deadline:
			s.Stop()
			return nil, fmt.Errorf("%s not listening on %s port %d after 5s", name, proto, port)
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop kills the server and reaps it.
func (s *Server) Stop() {
	_ = s.cmd.Process.Kill()
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
	}
}

// bound reports whether pid's netns has a socket on port: a listening one
// for tcp, any for udp.
func bound(pid int, proto string, port int) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, proto))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || (proto == "tcp" && fields[3] != "0A") { // 0A: TCP_LISTEN
			continue
		}
		_, hexPort, ok := strings.Cut(fields[1], ":")
		if p, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && int(p) == port {
			return true
		}
	}
	return false
}

// LastLines is the last n lines of s, joined on one line.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
