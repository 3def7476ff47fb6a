package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

// helpers are subcommands the bench runs inside namespaces.
var helpers = map[string]func([]string) int{
	"serve": serve,
	"probe": probe,
	"get":   get,
}

// serve PORT NAME: answers every connection with NAME.
func serve(args []string) int {
	l, err := net.Listen("tcp4", ":"+args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return 1
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = io.WriteString(c, args[1])
		}()
	}
}

// probe ADDR START_UNIX_NANOS TIMEOUT: connects to ADDR until a server
// answers, then prints the nanoseconds since START and what it said.
func probe(args []string) int {
	start, _ := strconv.ParseInt(args[1], 10, 64)
	timeout, err := time.ParseDuration(args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if who, err := once(args[0]); err == nil && who != "" {
			fmt.Println(time.Now().UnixNano()-start, who)
			return 0
		}
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "no answer from", args[0], "within", timeout)
	return 1
}

func once(addr string) (string, error) {
	c, err := net.DialTimeout("tcp4", addr, 100*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	b, err := io.ReadAll(c)
	return string(b), err
}

// get ADDR PATH: an HTTP GET from inside a netns, body to stdout.
func get(args []string) int {
	c, err := net.DialTimeout("tcp4", args[0], 2*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: agent\r\n\r\n", args[1])
	b, err := io.ReadAll(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Drop the headers.
	for i := 0; i+3 < len(b); i++ {
		if string(b[i:i+4]) == "\r\n\r\n" {
			os.Stdout.Write(b[i+4:])
			return 0
		}
	}
	return 1
}
