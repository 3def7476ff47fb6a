package sockprobe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// RequestTimeout bounds one request, all its operations included.
const RequestTimeout = 30 * time.Second

// Probe is a running probe process.
type Probe struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	dec    *json.Decoder
	stderr *lockedBuffer
	mu     sync.Mutex
	dead   error // set once the process failed or was stopped
}

// Command is the command line that starts this test binary as a probe,
// after prefix (such as "nsenter", "--net=/run/netns/x"); the caller may set
// SysProcAttr (a cgroup, say) before passing it to Start.
func Command(prefix ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// -test.run=^$: a binary whose TestMain forgot to call Main runs no
	// tests and exits, and Start's first request says so.
	args := append(append([]string{}, prefix...), self, "-test.run=^$")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), envVar+"=1")
	return cmd, nil
}

// Start starts cmd (from Command) and checks that it answers as a probe.
func Start(cmd *exec.Cmd) (*Probe, error) {
	p := &Probe{cmd: cmd, stderr: &lockedBuffer{}}
	cmd.Stderr = p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.dec = json.NewDecoder(stdout)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start probe %s: %w", strings.Join(cmd.Args, " "), err)
	}
	if _, err := p.Do(Request{Op: OpPing}); err != nil {
		p.Stop()
		return nil, fmt.Errorf("probe %s does not answer (does the test's TestMain call sockprobe.Main?): %w",
			strings.Join(cmd.Args, " "), err)
	}
	return p, nil
}

// Pid is the probe process's id.
func (p *Probe) Pid() int { return p.cmd.Process.Pid }

// Do sends req and waits (RequestTimeout at most) for the answer. A request
// the probe could not run is an error; failed socket calls are not: they are
// in the Results.
func (p *Probe) Do(req Request) (Response, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead != nil {
		return Response{}, p.dead
	}
	line, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	type answer struct {
		resp Response
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		var a answer
		if _, a.err = p.stdin.Write(append(line, '\n')); a.err == nil {
			a.err = p.dec.Decode(&a.resp)
		}
		done <- a
	}()
	select {
	case a := <-done:
		if a.err != nil {
			p.dead = fmt.Errorf("probe %d: %v (stderr: %s)", p.Pid(), a.err, p.stderr.String())
			p.kill()
			return Response{}, p.dead
		}
		if a.resp.Err != "" {
			return a.resp, fmt.Errorf("probe %d: %s: %s", p.Pid(), req.Op, a.resp.Err)
		}
		return a.resp, nil
	case <-time.After(RequestTimeout):
		p.dead = fmt.Errorf("probe %d: %s %s took longer than %v (stderr: %s)", p.Pid(), req.Op, req.Dst, RequestTimeout, p.stderr.String())
		p.kill()
		return Response{}, p.dead
	}
}

// Stop ends the probe: its stdin is closed, and it is killed if it does
// not exit within a second. Safe to call more than once.
func (p *Probe) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead == nil {
		p.dead = errors.New("probe stopped")
	}
	p.stdin.Close()
	exited := make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-time.After(time.Second):
		p.kill()
		<-exited
	}
}

func (p *Probe) kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.b.String())
}
