// Package sockprobe runs socket clients in a child process, for tests of
// socket-level programs (cgroup connect4/6, sendmsg4/6, recvmsg4/6, getpeername4/6):
// those see a socket by the cgroup of the process that created it, and a
// process, unlike a thread, can be put in a cgroup of the test's choosing.
//
// The child is the test binary itself, re-executed with an environment
// variable that makes its TestMain call Main instead of running tests:
//
//	func TestMain(m *testing.M) {
//		sockprobe.Main()
//		os.Exit(m.Run())
//	}
//
// The parent starts it with Start (wrapping it in nsenter, or placing it in
// a cgroup, as it needs) and sends it Requests: JSON lines on its stdin,
// answered by a Response line each on its stdout. Every socket operation in
// the child is bounded by OpTimeout; a request by the parent's RequestTimeout.
//
// ServeTCP and ServeUDP are the other end: servers that say who they are.
package sockprobe

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// envVar selects probe mode in the re-executed test binary.
const envVar = "BRAID_SOCKPROBE"

// OpTimeout bounds each connect, send and receive of the probe.
const OpTimeout = 2 * time.Second

// Operations a Request names.
const (
	// OpTCP connects N times to Dst; each time it reads the server's first
	// line, records getpeername, and closes.
	OpTCP = "tcp"
	// OpOpen connects once and keeps the connection (Result.ID names it).
	OpOpen = "open"
	// OpEcho sends Payload on connection ID and reads the echoed line.
	OpEcho = "echo"
	// OpClose closes connection ID.
	OpClose = "close"
	// OpUDP sends N datagrams from one unconnected socket to Dst, each
	// answered before the next (sendto, then recvfrom).
	OpUDP = "udp"
	// OpPing answers with no results: the probe is up.
	OpPing = "ping"
	// OpUDPConnected connects a UDP socket to Dst, records getpeername,
	// sends one datagram and receives the answer.
	OpUDPConnected = "udp-connected"
)

// Request is one thing for the probe to do.
type Request struct {
	Op      string `json:"op"`
	Dst     string `json:"dst,omitempty"` // IPv4:port
	N       int    `json:"n,omitempty"`   // OpTCP, OpUDP; 0 means 1
	ID      int    `json:"id,omitempty"`  // OpEcho, OpClose
	Payload string `json:"payload,omitempty"`
	// StopOnError ends an OpTCP or OpUDP series at its first failure.
	StopOnError bool `json:"stopOnError,omitempty"`
	// Mapped makes OpTCP, OpUDP and OpUDPConnected use an IPv6 socket
	// (as a dual-stack program does) and Dst's v4-mapped address,
	// ::ffff:a.b.c.d; the addresses in the results are then IPv6 too.
	Mapped bool `json:"mapped,omitempty"`
	// Timeout replaces OpTimeout for each IPv4 connection of an OpTCP
	// series: a test bounding how soon traffic follows a change must not
	// wait seconds on an attempt that started just before it.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// Result is the outcome of one connect (or one datagram).
type Result struct {
	// Err is the errno's name (ECONNREFUSED, ETIMEDOUT…) when the call
	// failed with one, else the error's text; empty on success.
	Err   string `json:"err,omitempty"`
	ID    int    `json:"id,omitempty"`    // OpOpen's connection
	Local string `json:"local,omitempty"` // getsockname
	Peer  string `json:"peer,omitempty"`  // getpeername
	From  string `json:"from,omitempty"`  // recvfrom's source address (UDP)
	Reply string `json:"reply,omitempty"` // the server's answer, one line
}

// Response answers one Request.
type Response struct {
	Results []Result `json:"results"`
	// Err says why the request itself could not be run.
	Err string `json:"err,omitempty"`
}

// Main turns the process into a probe when it was started as one (and then
// never returns); otherwise it returns at once.
func Main() {
	if os.Getenv(envVar) != "1" {
		return
	}
	os.Exit(serve(os.Stdin, os.Stdout))
}

// serve answers requests until in ends.
func serve(in io.Reader, out io.Writer) int {
	p := &probe{conns: map[int]net.Conn{}}
	dec, enc := json.NewDecoder(in), json.NewEncoder(out)
	for {
		var req Request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return 0
			}
			fmt.Fprintf(os.Stderr, "sockprobe: %v\n", err)
			return 2
		}
		if err := enc.Encode(p.do(req)); err != nil {
			fmt.Fprintf(os.Stderr, "sockprobe: %v\n", err)
			return 2
		}
	}
}

type probe struct {
	conns  map[int]net.Conn
	nextID int
}

func (p *probe) do(req Request) Response {
	n := max(req.N, 1)
	var dst netip.AddrPort
	switch req.Op {
	case OpTCP, OpOpen, OpUDP, OpUDPConnected:
		var err error
		if dst, err = netip.ParseAddrPort(req.Dst); err != nil || !dst.Addr().Is4() {
			return Response{Err: fmt.Sprintf("dst %q is not IPv4:port", req.Dst)}
		}
		if req.Mapped {
			dst = netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port())
		}
	}
	var res []Result
	switch req.Op {
	case OpTCP:
		timeout := OpTimeout
		if req.Timeout > 0 {
			timeout = req.Timeout
		}
		for range n {
			r := tcpOnce(dst, nil, req.Mapped, timeout)
			res = append(res, r)
			if r.Err != "" && req.StopOnError {
				break
			}
		}
	case OpOpen:
		var c net.Conn
		r := tcpOnce(dst, &c, req.Mapped, OpTimeout)
		if c != nil {
			p.nextID++
			p.conns[p.nextID] = c
			r.ID = p.nextID
		}
		res = append(res, r)
	case OpEcho:
		c, ok := p.conns[req.ID]
		if !ok {
			return Response{Err: fmt.Sprintf("no connection %d", req.ID)}
		}
		r := Result{ID: req.ID}
		_ = c.SetDeadline(time.Now().Add(OpTimeout))
		if _, err := c.Write([]byte(req.Payload + "\n")); err != nil {
			r.Err = errName(err)
		} else {
			r.Reply, r.Err = readLine(c)
		}
		res = append(res, r)
	case OpClose:
		c, ok := p.conns[req.ID]
		if !ok {
			return Response{Err: fmt.Sprintf("no connection %d", req.ID)}
		}
		delete(p.conns, req.ID)
		r := Result{ID: req.ID}
		if err := c.Close(); err != nil {
			r.Err = errName(err)
		}
		res = append(res, r)
	case OpUDP:
		return udpSeries(dst, n, req)
	case OpUDPConnected:
		res = append(res, udpConnected(dst, req.Payload, req.Mapped))
	case OpPing:
	default:
		return Response{Err: fmt.Sprintf("unknown op %q", req.Op)}
	}
	return Response{Results: res}
}

// tcpOnce connects to dst and reads the server's greeting; with keep it
// hands the connection over instead of closing it.
func tcpOnce(dst netip.AddrPort, keep *net.Conn, mapped bool, timeout time.Duration) Result {
	var r Result
	var c net.Conn
	var err error
	if mapped {
		c, err = dial6(unix.SOCK_STREAM, dst)
	} else {
		c, err = net.DialTimeout("tcp4", dst.String(), timeout)
	}
	if err != nil {
		r.Err = errName(err)
		return r
	}
	r.Local, r.Peer = names(c.(*net.TCPConn))
	_ = c.SetDeadline(time.Now().Add(timeout))
	r.Reply, r.Err = readLine(c)
	if keep != nil && r.Err == "" {
		*keep = c
		return r
	}
	c.Close()
	return r
}

func udpSeries(dst netip.AddrPort, n int, req Request) Response {
	var c *net.UDPConn
	var err error
	if req.Mapped {
		c, err = udp6()
	} else {
		c, err = net.ListenUDP("udp4", nil)
	}
	if err != nil {
		return Response{Err: err.Error()}
	}
	defer c.Close()
	payload := req.Payload
	if payload == "" {
		payload = "probe"
	}
	var res []Result
	buf := make([]byte, 1500)
	for range n {
		var r Result
		_ = c.SetDeadline(time.Now().Add(OpTimeout))
		if _, err := c.WriteToUDPAddrPort([]byte(payload), dst); err != nil {
			r.Err = errName(err)
		} else if m, from, err := c.ReadFromUDPAddrPort(buf); err != nil {
			r.Err = errName(err)
		} else {
			r.From, r.Reply = fromString(from, req.Mapped), string(buf[:m])
		}
		res = append(res, r)
		if r.Err != "" && req.StopOnError {
			break
		}
	}
	return Response{Results: res}
}

func udpConnected(dst netip.AddrPort, payload string, mapped bool) Result {
	var r Result
	var c *net.UDPConn
	var err error
	if mapped {
		var nc net.Conn
		if nc, err = dial6(unix.SOCK_DGRAM, dst); err == nil {
			c = nc.(*net.UDPConn)
		}
	} else {
		c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst))
	}
	if err != nil {
		r.Err = errName(err)
		return r
	}
	defer c.Close()
	r.Local, r.Peer = names(c)
	if payload == "" {
		payload = "probe"
	}
	_ = c.SetDeadline(time.Now().Add(OpTimeout))
	buf := make([]byte, 1500)
	if _, err := c.Write([]byte(payload)); err != nil {
		r.Err = errName(err)
	} else if m, from, err := c.ReadFromUDPAddrPort(buf); err != nil {
		r.Err = errName(err)
	} else {
		r.From, r.Reply = fromString(from, mapped), string(buf[:m])
	}
	return r
}

// fromString is a datagram's source as the test compares it: IPv4 for an
// IPv4 socket, as the kernel gave it (v4-mapped) for an IPv6 one.
func fromString(from netip.AddrPort, mapped bool) string {
	if mapped {
		return from.String()
	}
	return unmap(from).String()
}

// socket6 is an IPv6 socket of typ, dual-stack (IPV6_V6ONLY off, as
// programs that use one socket for both families set it).
func socket6(typ int) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_INET6, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "socket6"), nil
}

// dial6 connects an IPv6 socket of typ to dst (blocking, bounded by
// OpTimeout through SO_SNDTIMEO), for the net package's helpers after.
func dial6(typ int, dst netip.AddrPort) (net.Conn, error) {
	f, err := socket6(typ)
	if err != nil {
		return nil, err
	}
	defer f.Close() // net.FileConn holds its own copy
	tv := unix.NsecToTimeval(OpTimeout.Nanoseconds())
	fd := int(f.Fd())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return nil, err
	}
	sa := &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
	if err := unix.Connect(fd, sa); err != nil {
		if errors.Is(err, unix.EINPROGRESS) {
			err = unix.ETIMEDOUT // SO_SNDTIMEO ran out
		}
		return nil, err
	}
	return net.FileConn(f)
}

// udp6 is an unconnected dual-stack UDP socket.
func udp6() (*net.UDPConn, error) {
	f, err := socket6(unix.SOCK_DGRAM)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := net.FilePacketConn(f)
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

// names asks the kernel (getsockname, getpeername) rather than trusting
// what the net package remembers from the dial.
func names(c syscall.Conn) (local, peer string) {
	rc, err := c.SyscallConn()
	if err != nil {
		return "", ""
	}
	_ = rc.Control(func(fd uintptr) {
		if sa, err := unix.Getsockname(int(fd)); err == nil {
			local = sockaddr(sa)
		}
		if sa, err := unix.Getpeername(int(fd)); err == nil {
			peer = sockaddr(sa)
		}
	})
	return local, peer
}

func sockaddr(sa unix.Sockaddr) string {
	if in, ok := sa.(*unix.SockaddrInet4); ok {
		return netip.AddrPortFrom(netip.AddrFrom4(in.Addr), uint16(in.Port)).String()
	}
	if in, ok := sa.(*unix.SockaddrInet6); ok {
		return netip.AddrPortFrom(netip.AddrFrom16(in.Addr), uint16(in.Port)).String()
	}
	return fmt.Sprintf("%v", sa)
}

func unmap(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

// readLine reads up to a newline (or the end of the stream).
func readLine(c net.Conn) (string, string) {
	var b strings.Builder
	buf := make([]byte, 1)
	for b.Len() < 512 {
		n, err := c.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				return b.String(), ""
			}
			b.WriteByte(buf[0])
		}
		if err != nil {
			if errors.Is(err, io.EOF) && b.Len() > 0 {
				return b.String(), ""
			}
			return b.String(), errName(err)
		}
	}
	return b.String(), ""
}

// errName is the errno's name when err carries one, else its text.
func errName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return name
		}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "ETIMEDOUT"
	}
	if errors.Is(err, io.EOF) {
		return "EOF"
	}
	return err.Error()
}

// AskPeer is the line ServeTCP answers with the client's address (as the
// server sees it) instead of echoing it.
const AskPeer = "?peer"

// ServeTCP greets every connection accepted on l with name and a newline,
// then echoes it line by line until the client closes (but see AskPeer). It returns when l is
// closed.
func ServeTCP(l net.Listener, name string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if _, err := c.Write([]byte(name + "\n")); err != nil {
				return
			}
			sc := bufio.NewScanner(c)
			for {
				// An idle connection is kept: tests hold some open on purpose.
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				if !sc.Scan() {
					return
				}
				line := sc.Bytes()
				if string(line) == AskPeer {
					line = []byte(unmap(c.RemoteAddr().(*net.TCPAddr).AddrPort()).String())
				}
				if _, err := c.Write(append(line, '\n')); err != nil {
					return
				}
			}
		}()
	}
}

// ServeUDP answers every datagram on c with name. It returns when c is
// closed.
func ServeUDP(c *net.UDPConn, name string) {
	buf := make([]byte, 1500)
	for {
		_, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		_, _ = c.WriteToUDPAddrPort([]byte(name), from)
	}
}
