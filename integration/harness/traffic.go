package harness

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ioTimeout bounds every connect, read and write of the traffic helpers:
// everything happens between namespaces on one machine.
const ioTimeout = 2 * time.Second

// Listen opens a TCP listener on addr (such as ":0") inside ns, closed when
// t ends.
func (ns *NS) Listen(t testing.TB, addr string) *net.TCPListener {
	t.Helper()
	var l net.Listener
	err := ns.Do(func() (err error) {
		l, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", ns, err)
	}
	t.Cleanup(func() { l.Close() })
	return l.(*net.TCPListener)
}

// ListenUDP opens a UDP socket on addr (such as ":0") inside ns, closed
// when t ends.
func (ns *NS) ListenUDP(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	var c net.PacketConn
	err := ns.Do(func() (err error) {
		c, err = net.ListenPacket("udp4", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen udp in %s: %v", ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

// Dial connects from inside ns ("tcp4" or "udp4"); the connection gets a
// deadline of ioTimeout.
func (ns *NS) Dial(network string, dst netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		c, err = net.DialTimeout(network, dst.String(), ioTimeout)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", dst, ns, err)
	}
	return c, c.SetDeadline(time.Now().Add(ioTimeout))
}

// Ping sends one echo request to dst from inside ns and waits a second at
// most for the reply.
func (ns *NS) Ping(dst netip.Addr) error {
	_, err := ns.Run("ping", "-n", "-q", "-c1", "-W1", dst.String())
	return err
}

// RequireTCP connects from ns to an echo server in server, reached at dst,
// checks a round trip, and returns the client address the server saw.
func (ns *NS) RequireTCP(t testing.TB, server *NS, dst netip.Addr) netip.AddrPort {
	t.Helper()
	l := server.Listen(t, ":0")
	if err := l.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	seen := make(chan netip.AddrPort, 1)
	go func() {
		defer close(seen)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err == nil {
			_, _ = c.Write(buf[:n])
		}
		seen <- c.RemoteAddr().(*net.TCPAddr).AddrPort()
	}()
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	c, err := ns.Dial("tcp4", netip.AddrPortFrom(dst, port))
	if err != nil {
		t.Fatalf("TCP %s -> %s: %v", ns, dst, err)
	}
	defer c.Close()
	roundTrip(t, c, fmt.Sprintf("TCP %s -> %s", ns, dst))
	return unmap(<-seen)
}

// RequireUDP sends a datagram from ns to an echo socket in server, reached
// at dst, checks the reply, and returns the client address the server saw.
func (ns *NS) RequireUDP(t testing.TB, server *NS, dst netip.Addr) netip.AddrPort {
	t.Helper()
	s := server.ListenUDP(t, ":0")
	seen := make(chan netip.AddrPort, 1)
	go func() {
		defer close(seen)
		_ = s.SetDeadline(time.Now().Add(ioTimeout))
		buf := make([]byte, 64)
		n, from, err := s.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		_, _ = s.WriteToUDPAddrPort(buf[:n], from)
		seen <- from
	}()
	port := uint16(s.LocalAddr().(*net.UDPAddr).Port)
	c, err := ns.Dial("udp4", netip.AddrPortFrom(dst, port))
	if err != nil {
		t.Fatalf("UDP %s -> %s: %v", ns, dst, err)
	}
	defer c.Close()
	roundTrip(t, c, fmt.Sprintf("UDP %s -> %s", ns, dst))
	return unmap(<-seen)
}

func roundTrip(t testing.TB, c net.Conn, what string) {
	t.Helper()
	msg := []byte("braid " + what)
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("%s: write: %v", what, err)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("%s: no echo: %v", what, err)
	}
	if !bytes.Equal(buf[:n], msg) {
		t.Fatalf("%s: echo %q, want %q", what, buf[:n], msg)
	}
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// ReadUDP waits up to timeout for one datagram on c and returns its payload.
func ReadUDP(c *net.UDPConn, timeout time.Duration) ([]byte, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	return buf[:n], err
}

// Frame is an Ethernet+IPv4+UDP frame written byte by byte, so that any
// field, in particular the source addresses, can be forged.
type Frame struct {
	SrcMAC, DstMAC net.HardwareAddr
	Src, Dst       netip.AddrPort
	Payload        []byte
}

// Frame is a UDP frame to dst as the pod's own stack would send it: from
// its address and MAC, to its gateway's MAC (the host veth's).
func (p *Pod) Frame(dst netip.AddrPort, payload []byte) Frame {
	_, gwMAC := p.HostIf()
	return Frame{SrcMAC: p.MAC(), DstMAC: gwMAC, Src: netip.AddrPortFrom(p.IP, 40000), Dst: dst, Payload: payload}
}

// SendFrame writes f, as is, out of the pod's interface through an
// AF_PACKET socket: the kernel checks nothing, only the datapath can.
func (p *Pod) SendFrame(f Frame) error {
	b := f.bytes()
	return p.Do(func() error {
		ifc, err := net.InterfaceByName(p.IfName)
		if err != nil {
			return err
		}
		// Protocol 0: the socket only sends, it receives nothing.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: ifc.Index, Protocol: htons(unix.ETH_P_IP), Halen: 6}
		copy(to.Addr[:], f.DstMAC)
		return unix.Sendto(fd, b, 0, to)
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (f Frame) bytes() []byte {
	const ethLen, ipLen, udpLen = 14, 20, 8
	b := make([]byte, ethLen+ipLen+udpLen+len(f.Payload))
	copy(b[0:6], f.DstMAC)
	copy(b[6:12], f.SrcMAC)
	binary.BigEndian.PutUint16(b[12:], unix.ETH_P_IP)

	ip := b[ethLen : ethLen+ipLen]
	ip[0] = 0x45 // version 4, 5 words of header
	binary.BigEndian.PutUint16(ip[2:], uint16(len(b)-ethLen))
	ip[8] = 64 // TTL
	ip[9] = unix.IPPROTO_UDP
	src, dst := f.Src.Addr().As4(), f.Dst.Addr().As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))

	udp := b[ethLen+ipLen:]
	binary.BigEndian.PutUint16(udp[0:], f.Src.Port())
	binary.BigEndian.PutUint16(udp[2:], f.Dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen+len(f.Payload)))
	// A UDP checksum of 0 means "none", which IPv4 allows.
	copy(udp[udpLen:], f.Payload)
	return b
}

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
