package main

// The connects/s measurement: a tiny blocking-socket client and server,
// run as subcommands of the bench binary itself inside the pods' netns
// (under nsenter and taskset, like sockperf and iperf3).
//
// The client loops socket, connect, close with SO_LINGER 0: the close
// sends a RST, so no TIME_WAIT piles up and the ephemeral ports never run
// out, whatever the rate. Per connection the datapath carries SYN,
// SYN-ACK, ACK and RST. The server accepts and closes.

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

// connResult is what connrate-client prints.
type connResult struct {
	Connects int     `json:"connects"`
	Errors   int     `json:"errors"`
	Slow     int     `json:"slow"` // connects over 100 ms: a SYN was lost and retransmitted
	Seconds  float64 `json:"seconds"`
}

func (r connResult) rate() float64 { return float64(r.Connects) / r.Seconds }

// measureConnects runs the connect loop from the client pod to the server
// pod, both pinned to cpus.
func measureConnects(ctx context.Context, d *datapath, cpus string, dur time.Duration) (connResult, error) {
	self, err := os.Executable()
	if err != nil {
		return connResult{}, err
	}
	addr := net.JoinHostPort(d.serverIP, strconv.Itoa(connPort))
	srv, err := startServer(ctx, d.server, cpus, connPort, self, "connrate-server", "-addr", addr, "-max", (dur + time.Minute).String())
	if err != nil {
		return connResult{}, err
	}
	defer srv.stop()
	out, err := run(ctx, dur+time.Minute, d.client, cpus, self, "connrate-client", "-addr", addr, "-duration", dur.String())
	if err != nil {
		return connResult{}, err
	}
	var r connResult
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Seconds <= 0 {
		return connResult{}, fmt.Errorf("connrate-client output %q: %v", out, err)
	}
	return r, nil
}

func inet4(addr string) (*unix.SockaddrInet4, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("-addr %q is not an IPv4 ip:port", addr)
	}
	return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}, nil
}

// connServer is `bench connrate-server -addr ip:port -max d`: accept and
// close until killed, or until max has passed.
func connServer(args []string) int {
	fs := flag.NewFlagSet("connrate-server", flag.ExitOnError)
	addr := fs.String("addr", "", "IPv4 ip:port to listen on")
	maxRun := fs.Duration("max", time.Minute, "exit after this long in any case")
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
	for {
		nfd, _, err := unix.Accept(fd)
		switch {
		case err == nil:
			unix.Close(nfd)
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED):
		default:
			fmt.Fprintf(os.Stderr, "accept: %v\n", err)
			return 1
		}
	}
}

// connClient is `bench connrate-client -addr ip:port -duration d`: after a
// short warm-up, count connect+close cycles for d and print a connResult.
func connClient(args []string) int {
	fs := flag.NewFlagSet("connrate-client", flag.ExitOnError)
	addr := fs.String("addr", "", "IPv4 ip:port to connect to")
	dur := fs.Duration("duration", 5*time.Second, "how long to measure")
	warmup := fs.Duration("warmup", 500*time.Millisecond, "unmeasured run before")
	_ = fs.Parse(args)
	sa, err := inet4(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cycle := func(from time.Time, until time.Duration) connResult {
		var r connResult
		for time.Since(from) < until {
			t := time.Now()
			if err := connectOnce(sa); err != nil {
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

// connectOnce opens a TCP connection and resets it. Blocking connect is
// bounded by SO_SNDTIMEO.
func connectOnce(sa *unix.SockaddrInet4) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		return err
	}
	tv := unix.NsecToTimeval((2 * time.Second).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return err
	}
	return unix.Connect(fd, sa)
}
