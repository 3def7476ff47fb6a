package kit

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"
)

// Pair is a client and a server: the server listens on ServerIP, the
// client dials Target (ServerIP when empty: a service address otherwise).
type Pair struct {
	Client, Server In
	ServerIP       string
	Target         string
}

func (p Pair) target() string {
	if p.Target != "" {
		return p.Target
	}
	return p.ServerIP
}

// Ports the servers listen on.
const (
	SockperfPort = 11111
	IperfPort    = 5201
	ConnPort     = 7000
)

// RTT is a sockperf ping-pong result, round trip, in microseconds.
type RTT struct{ P50, P99 float64 }

var percentileRE = regexp.MustCompile(`percentile (50|99)\.000 =\s+([0-9.]+)`)

// MeasureRTT runs a sockperf TCP ping-pong of 64-byte messages (udp: UDP)
// for dur; sockperf drops its own warm-up. port is the one the client
// dials (a service port when p.Target is a service); the server listens on
// SockperfPort.
func MeasureRTT(ctx context.Context, p Pair, udp bool, port int, dur time.Duration) (RTT, error) {
	proto := "--tcp"
	start := p.Server.StartServer
	if udp {
		proto, start = "", p.Server.StartUDPServer
	}
	args := func(ip string, port int, more ...string) []string {
		a := []string{"-i", ip, "-p", strconv.Itoa(port)}
		if proto != "" {
			a = append(a, proto)
		}
		return append(a, more...)
	}
	srv, err := start(ctx, SockperfPort, "sockperf", append([]string{"server"}, args(p.ServerIP, SockperfPort)...)...)
	if err != nil {
		return RTT{}, err
	}
	defer srv.Stop()
	out, err := p.Client.Run(ctx, dur+30*time.Second, "sockperf",
		append([]string{"ping-pong"}, args(p.target(), port, "-m", "64", "--full-rtt", "-t", Seconds(dur))...)...)
	if err != nil {
		return RTT{}, err
	}
	var r RTT
	for _, m := range percentileRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		if m[1] == "50" {
			r.P50 = v
		} else {
			r.P99 = v
		}
	}
	if r.P50 == 0 || r.P99 == 0 {
		return RTT{}, fmt.Errorf("sockperf: no percentiles in output: %s", LastLines(out, 5))
	}
	return r, nil
}

// MeasureThroughput runs a single-stream iperf3 TCP test for dur and
// returns Gbit/s received.
func MeasureThroughput(ctx context.Context, p Pair, dur time.Duration) (float64, error) {
	srv, err := p.Server.StartServer(ctx, IperfPort, "iperf3", "-s", "-B", p.ServerIP, "-p", strconv.Itoa(IperfPort))
	if err != nil {
		return 0, err
	}
	defer srv.Stop()
	out, err := p.Client.Run(ctx, dur+30*time.Second, "iperf3", "-c", p.target(),
		"-p", strconv.Itoa(IperfPort), "-t", Seconds(dur), "-J")
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

// Seconds renders d for tools that take whole seconds (at least 1).
func Seconds(d time.Duration) string {
	return strconv.Itoa(int(math.Max(1, math.Round(d.Seconds()))))
}
