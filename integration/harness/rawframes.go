package harness

// Raw frames of any shape (ARP, malformed IPv4, VXLAN to a node's tunnel
// port) written out of an interface with an AF_PACKET socket: the sender's
// kernel checks nothing, only the datapath can.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// SendRaw writes each frame, as is, out of the interface ifName inside ns.
// A frame must hold at least an Ethernet header; its EtherType is the
// protocol the kernel records for it.
func (ns *NS) SendRaw(ifName string, frames ...[]byte) error {
	return ns.Do(func() error {
		ifc, err := net.InterfaceByName(ifName)
		if err != nil {
			return err
		}
		// Protocol 0: the socket only sends, it receives nothing.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		defer unix.Close(fd)
		for i, b := range frames {
			if len(b) < 14 {
				return fmt.Errorf("frame %d: %d bytes, shorter than an Ethernet header", i, len(b))
			}
			to := &unix.SockaddrLinklayer{Ifindex: ifc.Index, Protocol: htons(binary.BigEndian.Uint16(b[12:])), Halen: 6}
			copy(to.Addr[:], b[0:6])
			if err := unix.Sendto(fd, b, 0, to); err != nil {
				return fmt.Errorf("frame %d (%d bytes): %w", i, len(b), err)
			}
		}
		return nil
	})
}

// SendRaw writes frames out of the pod's interface.
func (p *Pod) SendRaw(frames ...[]byte) error { return p.NS.SendRaw(p.IfName, frames...) }

// Sniffer records the frames an interface receives, from an AF_PACKET
// socket: unlike a tcpdump capture, frames no decoder understands (the
// interesting ones in hostile tests) are kept as they are.
type Sniffer struct {
	fd     int
	done   chan struct{}
	frames chan [][]byte
	// Dropped is how many frames the socket lost (its buffer was full),
	// known after Stop: a check over the frames is incomplete unless 0.
	Dropped int
}

// Sniff starts recording what ifName inside ns receives (not what it
// sends). Stop it with Stop.
func (ns *NS) Sniff(t testing.TB, ifName string) *Sniffer {
	t.Helper()
	s := &Sniffer{fd: -1, done: make(chan struct{}), frames: make(chan [][]byte, 1)}
	err := ns.Do(func() error {
		ifc, err := net.InterfaceByName(ifName)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		s.fd = fd
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
		tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index})
	})
	if err != nil {
		if s.fd >= 0 {
			unix.Close(s.fd)
		}
		t.Fatalf("sniff %s in %s: %v", ifName, ns, err)
	}
	go s.loop()
	t.Cleanup(func() { s.Stop() })
	return s
}

func (s *Sniffer) loop() {
	var got [][]byte
	buf := make([]byte, 65536)
	for {
		select {
		case <-s.done:
			s.frames <- got
			return
		default:
		}
		n, from, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			continue // the read timeout: look at done again
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		got = append(got, bytes.Clone(buf[:n]))
	}
}

// Stop ends the recording and returns the frames received, in order.
// Calling it again returns nothing.
func (s *Sniffer) Stop() [][]byte {
	select {
	case <-s.done:
		return nil
	default:
	}
	time.Sleep(100 * time.Millisecond) // frames in flight
	close(s.done)
	frames := <-s.frames
	if st, err := unix.GetsockoptTpacketStats(s.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
		s.Dropped = int(st.Drops)
	}
	unix.Close(s.fd)
	return frames
}
