package main

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

// nsPath is where `ip netns add` puts a named network namespace.
func nsPath(name string) string { return "/run/netns/" + name }

// command builds argv to run inside netns (a name under /run/netns; "" for
// the current one), pinned to cpus when set. taskset and nsenter both exec,
// so the process keeps one pid and dies with the bench (Pdeathsig).
func command(ctx context.Context, netns, cpus, name string, args ...string) *exec.Cmd {
	var argv []string
	if cpus != "" {
		argv = append(argv, "taskset", "-c", cpus)
	}
	if netns != "" {
		argv = append(argv, "nsenter", "--net="+nsPath(netns))
	}
	argv = append(argv, name)
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// run runs a command to completion, bounded by timeout, and returns its
// stdout; a failure carries stderr.
func run(ctx context.Context, timeout time.Duration, netns, cpus, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := command(ctx, netns, cpus, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("timed out after %s", timeout)
		}
		detail := stderr.String()
		if strings.TrimSpace(detail) == "" {
			detail = stdout.String() // iperf3 -J reports errors on stdout
		}
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLines(detail, 5))
	}
	return stdout.String(), nil
}

// sh runs a command in the current netns with a short bound.
func sh(ctx context.Context, name string, args ...string) error {
	_, err := run(ctx, 30*time.Second, "", "", name, args...)
	return err
}

// server is a long-running process (sockperf, iperf3, connrate) serving one
// measurement.
type server struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	exited chan error
}

// startServer starts a server in netns and waits, bounded, until it listens
// on TCP port (read from /proc/<pid>/net/tcp, which shows the process's netns).
func startServer(ctx context.Context, netns, cpus string, port int, name string, args ...string) (*server, error) {
	s := &server{cmd: command(ctx, netns, cpus, name, args...), exited: make(chan error, 1)}
	s.cmd.Stderr = &s.stderr
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.exited <- s.cmd.Wait() }()
	deadline := time.After(5 * time.Second)
	for {
		if listening(s.cmd.Process.Pid, port) {
			return s, nil
		}
		select {
		case err := <-s.exited:
			return nil, fmt.Errorf("%s exited before listening: %v: %s", name, err, lastLines(s.stderr.String(), 5))
		case <-deadline:
			s.stop()
			return nil, fmt.Errorf("%s not listening on port %d after 5s", name, port)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop kills the server and reaps it.
func (s *server) stop() {
	_ = s.cmd.Process.Kill()
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
	}
}

// listening reports whether pid's netns has a TCP socket listening on port.
func listening(pid, port int) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" { // 0A: TCP_LISTEN
			continue
		}
		_, hexPort, ok := strings.Cut(fields[1], ":")
		if p, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && int(p) == port {
			return true
		}
	}
	return false
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
