package harness

// Datagram senders for path MTU and TTL tests: a UDP socket with the IPv4
// header fields under control (DF, TTL) that reports how the network
// answered, read from the socket's error queue (IP_RECVERR), so a suite can
// tell a local refusal from an ICMP error on the wire and read its MTU.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// SendUDP sends one datagram with payload from inside ns to dst, from an
// ephemeral port.
func (ns *NS) SendUDP(dst netip.AddrPort, payload []byte) error {
	c, err := ns.Dial("udp4", dst)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write(payload)
	return err
}

// Probe is one datagram to send with Send.
type Probe struct {
	// Size is the whole IPv4 packet: 20 bytes of header, 8 of UDP, the
	// rest payload.
	Size int
	// DF sets Don't Fragment and ignores any path MTU the sender has
	// learnt (IP_PMTUDISC_PROBE): the packet leaves as long as it fits
	// the sender's own interface. Without DF the kernel may fragment.
	DF bool
	// TTL, if set, is the packet's TTL.
	TTL int
}

// Answer is how the network answered a Probe.
type Answer struct {
	// Echoed: the echo server received the datagram whole and its
	// answer came back.
	Echoed bool
	// Error is the error the sender's kernel reported, nil if none.
	Error *SockError
}

// SockError is an entry of the socket's error queue (struct
// sock_extended_err).
type SockError struct {
	Errno unix.Errno
	// Local: refused by the sender's own kernel (SO_EE_ORIGIN_LOCAL)
	// rather than by an ICMP error from the network.
	Local bool
	// ICMP type and code, for errors from the network (3/4 is
	// "fragmentation needed", 11/0 "TTL exceeded").
	Type, Code uint8
	// Info is the MTU for EMSGSIZE, local or from ICMP 3/4.
	Info uint32
	// Offender is the address that sent the ICMP error.
	Offender netip.Addr
}

func (e *SockError) String() string {
	if e.Local {
		return fmt.Sprintf("local %v (info %d)", e.Errno, e.Info)
	}
	return fmt.Sprintf("ICMP %d/%d from %s: %v (info %d)", e.Type, e.Code, e.Offender, e.Errno, e.Info)
}

// FragNeeded reports whether e is an ICMP "fragmentation needed" error.
func (e *SockError) FragNeeded() bool {
	return e != nil && !e.Local && e.Type == 3 && e.Code == 4
}

func (a Answer) String() string {
	switch {
	case a.Echoed:
		return "echoed"
	case a.Error != nil:
		return a.Error.String()
	}
	return "no answer"
}

// answerTimeout bounds the wait for an echo or an error (generous, for a
// loaded machine: an answer comes in microseconds).
const answerTimeout = 2 * time.Second

// Send sends p from ns to a UDP echo server that Send runs in server,
// reached at dst, and reports what came back within answerTimeout.
func (ns *NS) Send(t testing.TB, server *NS, dst netip.Addr, p Probe) Answer {
	t.Helper()
	if p.Size < 28 {
		t.Fatalf("probe of %d bytes: an IPv4/UDP packet has at least 28", p.Size)
	}
	srv := server.ListenUDP(t, ":0")
	go func() {
		_ = srv.SetDeadline(time.Now().Add(2 * answerTimeout))
		buf := make([]byte, 65536)
		n, from, err := srv.ReadFromUDPAddrPort(buf)
		if err == nil {
			// Echo a short answer: the way back need not fit anything.
			_, _ = srv.WriteToUDPAddrPort(binary.BigEndian.AppendUint32(nil, uint32(n)), from)
		}
	}()
	payload := bytes.Repeat([]byte{0xbd}, p.Size-28)
	dstAP := netip.AddrPortFrom(dst, uint16(srv.LocalAddr().(*net.UDPAddr).Port))
	var a Answer
	err := ns.Do(func() error {
		var err error
		a, err = probe(dstAP, p, payload)
		return err
	})
	if err != nil {
		t.Fatalf("probe %s -> %s: %v", ns, dst, err)
	}
	return a
}

func probe(dst netip.AddrPort, p Probe, payload []byte) (Answer, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return Answer{}, err
	}
	defer unix.Close(fd)
	pmtu := unix.IP_PMTUDISC_DONT
	if p.DF {
		pmtu = unix.IP_PMTUDISC_PROBE
	}
	opts := [][3]int{{unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, pmtu}, {unix.IPPROTO_IP, unix.IP_RECVERR, 1}}
	if p.TTL > 0 {
		opts = append(opts, [3]int{unix.IPPROTO_IP, unix.IP_TTL, p.TTL})
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o[0], o[1], o[2]); err != nil {
			return Answer{}, fmt.Errorf("setsockopt %d: %w", o[1], err)
		}
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}); err != nil {
		return Answer{}, err
	}
	// A local refusal fails the send and queues the error too.
	if _, err := unix.Write(fd, payload); err != nil && !errors.Is(err, unix.EMSGSIZE) {
		return Answer{}, fmt.Errorf("send %d bytes: %w", len(payload), err)
	}
	deadline := time.Now().Add(answerTimeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return Answer{}, nil
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			return Answer{}, err
		}
		if pfd[0].Revents&unix.POLLERR != 0 {
			e, err := readErrQueue(fd)
			return Answer{Error: e}, err
		}
		buf := make([]byte, 16)
		n, err = unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			// With IP_RECVERR a pending error fails the read: fetch it.
			e, qerr := readErrQueue(fd)
			if qerr != nil {
				return Answer{}, fmt.Errorf("read: %w", err)
			}
			return Answer{Error: e}, nil
		}
		if n == 4 && int(binary.BigEndian.Uint32(buf)) == len(payload) {
			return Answer{Echoed: true}, nil
		}
		return Answer{}, fmt.Errorf("unexpected answer % x", buf[:n])
	}
}

// readErrQueue reads one sock_extended_err from the socket's error queue.
func readErrQueue(fd int) (*SockError, error) {
	data, oob := make([]byte, 65536), make([]byte, 512)
	_, oobn, _, _, err := unix.Recvmsg(fd, data, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
	if err != nil {
		return nil, fmt.Errorf("error queue: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		if m.Header.Level != unix.IPPROTO_IP || m.Header.Type != unix.IP_RECVERR {
			continue
		}
		// struct sock_extended_err (16 bytes), then the offender's
		// struct sockaddr_in.
		d := m.Data
		if len(d) < 16 {
			return nil, errors.New("short sock_extended_err")
		}
		e := &SockError{
			Errno: unix.Errno(binary.NativeEndian.Uint32(d[0:])),
			Local: d[4] == unix.SO_EE_ORIGIN_LOCAL,
			Type:  d[5], Code: d[6],
			Info: binary.NativeEndian.Uint32(d[8:]),
		}
		if len(d) >= 16+8 && binary.NativeEndian.Uint16(d[16:]) == unix.AF_INET {
			e.Offender = netip.AddrFrom4([4]byte(d[20:24]))
		}
		return e, nil
	}
	return nil, errors.New("no IP_RECVERR message in the error queue")
}

// PathMTU is the path MTU ns's kernel currently knows towards dst
// (IP_MTU of a connected socket): the interface's, or what ICMP taught it.
func (ns *NS) PathMTU(t testing.TB, dst netip.Addr) int {
	t.Helper()
	var mtu int
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.As4(), Port: 9}); err != nil {
			return err
		}
		mtu, err = unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU)
		return err
	})
	if err != nil {
		t.Fatalf("path MTU %s -> %s: %v", ns, dst, err)
	}
	return mtu
}
