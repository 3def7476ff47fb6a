package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"
)

// datapath is one way for two pods on the same node to talk: the client
// pod connects to the server pod.
type datapath struct {
	key, title       string
	client, server   string // pod netns names
	clientIP         string
	serverIP         string
	counters         string // braid: the pinned counters map; "" otherwise
	redirect, passed uint64 // braid: counter deltas over all measurements
}

// Ports the servers listen on, in the server pod.
const (
	sockperfPort = 11111
	iperfPort    = 5201
	connPort     = 7000
)

// rtt is a sockperf TCP ping-pong result, round trip, in microseconds.
type rtt struct{ p50, p99 float64 }

var percentileRE = regexp.MustCompile(`percentile (50|99)\.000 =\s+([0-9.]+)`)

// measureRTT runs a sockperf TCP ping-pong (64-byte messages) with client
// and server pinned to cpus.
func measureRTT(ctx context.Context, d *datapath, cpus string, dur time.Duration) (rtt, error) {
	srv, err := startServer(ctx, d.server, cpus, sockperfPort, "sockperf", "server", "--tcp",
		"-i", d.serverIP, "-p", strconv.Itoa(sockperfPort))
	if err != nil {
		return rtt{}, err
	}
	defer srv.stop()
	out, err := run(ctx, dur+30*time.Second, d.client, cpus, "sockperf", "ping-pong", "--tcp",
		"-i", d.serverIP, "-p", strconv.Itoa(sockperfPort), "-m", "64", "--full-rtt", "-t", seconds(dur))
	if err != nil {
		return rtt{}, err
	}
	var r rtt
	for _, m := range percentileRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		if m[1] == "50" {
			r.p50 = v
		} else {
			r.p99 = v
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		return rtt{}, fmt.Errorf("sockperf: no percentiles in output: %s", lastLines(out, 5))
	}
	return r, nil
}

// measureThroughput runs a single-stream iperf3 TCP test; client on
// cpus[0], server on cpus[1]. It returns Gbit/s received.
func measureThroughput(ctx context.Context, d *datapath, clientCPU, serverCPU string, dur time.Duration) (float64, error) {
	srv, err := startServer(ctx, d.server, serverCPU, iperfPort, "iperf3", "-s", "-B", d.serverIP, "-p", strconv.Itoa(iperfPort))
	if err != nil {
		return 0, err
	}
	defer srv.stop()
	out, err := run(ctx, dur+30*time.Second, d.client, clientCPU, "iperf3", "-c", d.serverIP,
		"-p", strconv.Itoa(iperfPort), "-t", seconds(dur), "-J")
	if err != nil {
		return 0, err
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w", err)
	}
	if res.Error != "" || res.End.SumReceived.BitsPerSecond == 0 {
		return 0, fmt.Errorf("iperf3: %q", res.Error)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, nil
}

// seconds renders d for tools that take whole seconds (at least 1).
func seconds(d time.Duration) string {
	return strconv.Itoa(int(math.Max(1, math.Round(d.Seconds()))))
}
