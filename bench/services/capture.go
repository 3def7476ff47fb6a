package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
)

// capture counts the packets tcpdump sees on a port of the underlay
// bridge, in one direction: "in" is what the netns behind the port sends,
// "out" what it receives. Packets are only counted, not written.
type capture struct {
	cmd    *exec.Cmd
	what   string
	stderr chan string // everything tcpdump said, once it has exited
}

func startCapture(ctx context.Context, port, direction, filter string) (*capture, error) {
	args := []string{"--net=" + kit.NSPath(underlayNS), "tcpdump", "-i", port, "-Q", direction, "-nn", "-s", "96",
		"-B", "8192", "--immediate-mode", "-w", "/dev/null"}
	c := &capture{what: fmt.Sprintf("tcpdump -Q %s %q on %s", direction, filter, port), stderr: make(chan string, 1)}
	c.cmd = exec.CommandContext(ctx, "nsenter", append(args, strings.Fields(filter)...)...)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c.cmd.WaitDelay = 2 * time.Second
	pipe, err := c.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	listening := make(chan bool, 2)
	go func() {
		var said []string
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			said = append(said, sc.Text())
			if strings.Contains(sc.Text(), "listening on") {
				listening <- true
			}
		}
		listening <- false
		c.stderr <- strings.Join(said, "\n")
	}()
	select {
	case ok := <-listening:
		if ok {
			return c, nil
		}
	case <-time.After(10 * time.Second):
	}
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
	return nil, fmt.Errorf("%s did not start", c.what)
}

var (
	capturedRE = regexp.MustCompile(`(\d+) packets? captured`)
	droppedRE  = regexp.MustCompile(`(\d+) packets? dropped by kernel`)
)

// stop ends the capture (SIGINT: tcpdump prints its counts) and returns
// how many packets it saw and how many the kernel dropped before it could.
func (c *capture) stop() (captured, dropped int, err error) {
	time.Sleep(100 * time.Millisecond) // the last packets in flight
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	var said string
	select {
	case said = <-c.stderr:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		return 0, 0, fmt.Errorf("%s did not stop", c.what)
	}
	_ = c.cmd.Wait()
	m := capturedRE.FindStringSubmatch(said)
	if m == nil {
		return 0, 0, fmt.Errorf("%s: no packet count in %q", c.what, said)
	}
	captured, _ = strconv.Atoi(m[1])
	if m := droppedRE.FindStringSubmatch(said); m != nil {
		dropped, _ = strconv.Atoi(m[1])
	}
	return captured, dropped, nil
}
