package harness

// Captures: tcpdump in a namespace (typically the underlay, on a node's
// bridge port), written as pcap and decoded with internal/packet, so that a
// suite asserts on header fields rather than on tcpdump's text.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/braid-cni/braid/internal/packet"
)

// Tcpdump is a running capture.
type Tcpdump struct {
	cmd  *exec.Cmd
	file string
	done chan error
	what string
}

// StartCapture runs tcpdump on iface inside ns with a BPF filter (may be
// empty) and returns once it is capturing. Stop it with Stop; it is killed
// when t ends in any case.
func (ns *NS) StartCapture(t testing.TB, iface, filter string) *Tcpdump {
	t.Helper()
	RequireRoot(t, "tcpdump")
	dir := t.TempDir()
	c := &Tcpdump{file: filepath.Join(dir, "capture.pcap"), done: make(chan error, 1),
		what: fmt.Sprintf("tcpdump on %s in %s", iface, ns)}
	args := []string{"-i", iface, "-n", "-U", "--immediate-mode", "-w", c.file}
	if filter != "" {
		args = append(args, strings.Fields(filter)...)
	}
	c.cmd = exec.Command("tcpdump", args...)
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(c.cmd.Start); err != nil {
		t.Fatalf("%s: %v", c.what, err)
	}
	t.Cleanup(func() { c.kill() })
	// tcpdump says "listening on <iface>" once the socket is bound.
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var lines []string
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if strings.Contains(sc.Text(), "listening on") {
				ready <- ""
				// Keep draining so tcpdump never blocks on stderr.
				for sc.Scan() {
				}
				break
			}
		}
		ready <- strings.Join(lines, "\n")
		c.done <- c.cmd.Wait()
	}()
	select {
	case msg := <-ready:
		if msg != "" {
			t.Fatalf("%s did not start: %s", c.what, msg)
		}
	case <-time.After(commandTimeout):
		t.Fatalf("%s did not start within %s", c.what, commandTimeout)
	}
	return c
}

func (c *Tcpdump) kill() {
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Kill()
	}
}

// Stop ends the capture and returns the frames it holds, decoded (frames
// internal/packet cannot decode are logged and left out).
func (c *Tcpdump) Stop(t testing.TB) []*packet.Frame {
	t.Helper()
	// --immediate-mode hands each packet to tcpdump at once and -U writes
	// it at once; leave a moment for the last ones in flight.
	time.Sleep(100 * time.Millisecond)
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		c.kill()
		t.Fatalf("%s did not stop", c.what)
	}
	raw, err := readPcap(c.file)
	if err != nil {
		t.Fatalf("%s: %v", c.what, err)
	}
	var frames []*packet.Frame
	for _, r := range raw {
		f, err := packet.Parse(r)
		if err != nil {
			t.Logf("%s: undecodable frame (%v): % x", c.what, err, r)
			continue
		}
		frames = append(frames, f)
	}
	return frames
}

// readPcap returns the frames of a classic pcap file (either byte order,
// micro- or nanosecond timestamps).
func readPcap(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 24 {
		return nil, fmt.Errorf("pcap file of %d bytes", len(b))
	}
	var order binary.ByteOrder
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		order = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		return nil, errors.New("not a pcap file")
	}
	if lt := order.Uint32(b[20:]); lt != 1 {
		return nil, fmt.Errorf("link type %d, want Ethernet", lt)
	}
	var frames [][]byte
	for rest := b[24:]; len(rest) > 0; {
		if len(rest) < 16 {
			return frames, errors.New("truncated pcap record header")
		}
		n := int(order.Uint32(rest[8:]))
		if len(rest) < 16+n {
			return frames, errors.New("truncated pcap record")
		}
		frames = append(frames, rest[16:16+n])
		rest = rest[16+n:]
	}
	return frames, nil
}

// VXLANInner decodes f as VXLAN on UDP destination port (any port, unlike
// packet.Parse, which knows the usual two): the VNI and the inner frame.
func VXLANInner(f *packet.Frame, port uint16) (inner *packet.Frame, vni uint32, ok bool) {
	if f.Proto != packet.ProtoUDP || f.DstPort != port || len(f.Payload) < 8+packet.EthLen {
		return nil, 0, false
	}
	inner, err := packet.Parse(f.Payload[8:])
	if err != nil {
		return nil, 0, false
	}
	return inner, binary.BigEndian.Uint32(f.Payload[4:]) >> 8, true
}
