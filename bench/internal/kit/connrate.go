package kit

// The connects/s measurement: a tiny blocking-socket client and server,
// run as subcommands of the benchmark binary itself inside the pods'
// netns (under nsenter and taskset, like sockperf and iperf3).
//
// The client loops socket, connect, [request, reply,] close with SO_LINGER
// 0: the close sends a RST, so no TIME_WAIT piles up and the ephemeral
// ports never run out, whatever the rate. Per connection the datapath
// carries SYN, SYN-ACK, ACK, the request and reply when asked for, and RST.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// ConnResult is what connrate-client prints.
type ConnResult struct {
	Connects int     `json:"connects"`
	Errors   int     `json:"errors"`
	Slow     int     `json:"slow"` // connects over 100 ms: a SYN was lost and retransmitted
	Seconds  float64 `json:"seconds"`
}

// Rate is connections per second.
func (r ConnResult) Rate() float64 { return float64(r.Connects) / r.Seconds }

// MeasureConnects runs the connect loop from p.Client to p.Target:port for
// dur; the server listens on p.ServerIP:ConnPort. request: every connection
// also carries a 16-byte request and its echo.
func MeasureConnects(ctx context.Context, p Pair, port int, request bool, dur time.Duration) (ConnResult, error) {
	self, err := os.Executable()
	if err != nil {
		return ConnResult{}, err
	}
	listen := net.JoinHostPort(p.ServerIP, strconv.Itoa(ConnPort))
	srv, err := p.Server.StartServer(ctx, ConnPort, self, "connrate-server", "-addr", listen,
		"-max", (dur + time.Minute).String(), "-echo="+strconv.FormatBool(request))
	if err != nil {
		return ConnResult{}, err
	}
	defer srv.Stop()
	out, err := p.Client.Run(ctx, dur+time.Minute, self, "connrate-client",
		"-addr", net.JoinHostPort(p.target(), strconv.Itoa(port)), "-duration", dur.String(), "-request="+strconv.FormatBool(request))
	if err != nil {
		return ConnResult{}, err
	}
	var r ConnResult
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Seconds <= 0 {
		return ConnResult{}, fmt.Errorf("connrate-client output %q: %v", out, err)
	}
	if r.Connects == 0 {
		return r, fmt.Errorf("connrate-client: no connection succeeded (%d errors)", r.Errors)
	}
	return r, nil
}

// Subcommand runs the measurement helper that args (os.Args) names, if it
// names one: every benchmark's main calls it first.
func Subcommand(args []string) (code int, ok bool) {
	if len(args) < 2 {
		return 0, false
	}
	switch args[1] {
	case "connrate-server":
		return connServer(args[2:]), true
	case "connrate-client":
		return connClient(args[2:]), true
	}
	return 0, false
}

func inet4(addr string) (*unix.SockaddrInet4, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("-addr %q is not an IPv4 ip:port", addr)
	}
	return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}, nil
}

// connServer is `connrate-server -addr ip:port -max d [-echo]`: accept,
// echo a request with -echo, and close, until killed or max has passed.
func connServer(args []string) int {
	fs := flag.NewFlagSet("connrate-server", flag.ExitOnError)
	addr := fs.String("addr", "", "IPv4 ip:port to listen on")
	maxRun := fs.Duration("max", time.Minute, "exit after this long in any case")
	echo := fs.Bool("echo", false, "read a request and send it back before closing")
	_ = fs.Parse(args)
	sa, err := inet4(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	time.AfterFunc(*maxRun, func() { os.Exit(0) })
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		err = unix.Bind(fd, sa)
	}
	if err == nil {
		err = unix.Listen(fd, 4096)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "listen on %s: %v\n", *addr, err)
		return 1
	}
	buf := make([]byte, 64)
	for {
		nfd, _, err := unix.Accept(fd)
		switch {
		case err == nil:
			if *echo {
				if n, err := unix.Read(nfd, buf); err == nil && n > 0 {
					_, _ = unix.Write(nfd, buf[:n])
				}
			}
			unix.Close(nfd)
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED):
		default:
			fmt.Fprintf(os.Stderr, "accept: %v\n", err)
			return 1
		}
	}
}

// connClient is `connrate-client -addr ip:port -duration d [-request]`:
// after a short warm-up, count connection cycles for d and print a
// ConnResult.
func connClient(args []string) int {
	fs := flag.NewFlagSet("connrate-client", flag.ExitOnError)
	addr := fs.String("addr", "", "IPv4 ip:port to connect to")
	dur := fs.Duration("duration", 5*time.Second, "how long to measure")
	warmup := fs.Duration("warmup", 500*time.Millisecond, "unmeasured run before")
	request := fs.Bool("request", false, "send a request and read its echo on every connection")
	_ = fs.Parse(args)
	sa, err := inet4(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cycle := func(from time.Time, until time.Duration) ConnResult {
		var r ConnResult
		for time.Since(from) < until {
			t := time.Now()
			if err := connectOnce(sa, *request); err != nil {
				r.Errors++
				if r.Errors == 1 {
					fmt.Fprintf(os.Stderr, "connect %s: %v\n", *addr, err)
				}
			} else {
				r.Connects++
			}
			if time.Since(t) > 100*time.Millisecond {
				r.Slow++
			}
		}
		r.Seconds = time.Since(from).Seconds()
		return r
	}
	cycle(time.Now(), *warmup)
	r := cycle(time.Now(), *dur)
	_ = json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// connectOnce opens a TCP connection, optionally exchanges a request and
// its echo, and resets it. Blocking calls are bounded by SO_SNDTIMEO and
// SO_RCVTIMEO.
func connectOnce(sa *unix.SockaddrInet4, request bool) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		return err
	}
	tv := unix.NsecToTimeval((2 * time.Second).Nanoseconds())
	for _, opt := range []int{unix.SO_SNDTIMEO, unix.SO_RCVTIMEO} {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
			return err
		}
	}
	if err := unix.Connect(fd, sa); err != nil || !request {
		return err
	}
	req := []byte("braid-bench-req\n")
	if _, err := unix.Write(fd, req); err != nil {
		return err
	}
	got := make([]byte, len(req))
	for n := 0; n < len(req); {
		m, err := unix.Read(fd, got[n:])
		if err != nil {
			return err
		}
		if m == 0 {
			return errors.New("connection closed before the reply")
		}
		n += m
	}
	return nil
}
