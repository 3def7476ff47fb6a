package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"

	"github.com/braid-cni/braid/bench/internal/kit"
	"github.com/braid-cni/braid/core/store"
)

// svcPort is one port of a service, as both braid (a store service) and
// kube-proxy (a KUBE-SVC chain and a KUBE-SEP chain) define it. Every
// service here has one backend.
type svcPort struct {
	service  string // Kubernetes name; kube-proxy's comments say "bench/<service>:<port>"
	portName string
	vip      netip.Addr
	port     uint16
	backend  netip.AddrPort
	nodePort uint16 // 0: ClusterIP only
}

func (s svcPort) braidName() string { return s.service + "-" + s.portName }
func (s svcPort) kubeName() string  { return "bench/" + s.service + ":" + s.portName }

// The measured services: one ClusterIP service with a port per
// measurement (the connect loop's and sockperf's, the ports the backend
// listens on), and one NodePort service the same way.
var (
	clusterVIP   = netip.MustParseAddr("198.18.100.10")
	nodePortVIP  = netip.MustParseAddr("198.18.100.11")
	nodePortConn = uint16(30700)
	nodePortRTT  = uint16(31111)
)

// maxServices is what the filler addresses hold: 200 VIPs × 300 ports.
const maxServices = 60000

// clusterIPSet is count services: count-1 fillers, then the measured one
// last (where kube-proxy's linear walk meets it last: the worst case, as
// for any service with many others defined before it).
func clusterIPSet(count int, backend netip.Addr) []svcPort {
	var out []svcPort
	for i := 0; i < count-1; i++ {
		// 200 VIPs (198.18.100.20-219), ports from 1000 (below the measured ports).
		vip := netip.AddrFrom4([4]byte{198, 18, 100, byte(20 + i%200)})
		port := uint16(1000 + i/200)
		out = append(out, svcPort{service: fmt.Sprintf("filler-%05d", i), portName: "p", vip: vip, port: port,
			backend: netip.AddrPortFrom(backend, port)})
	}
	return append(out, measured("measured", clusterVIP, backend, 0, 0)...)
}

// nodePortSet is the NodePort service alone.
func nodePortSet(backend netip.Addr) []svcPort {
	return measured("nodeport", nodePortVIP, backend, nodePortConn, nodePortRTT)
}

func measured(service string, vip, backend netip.Addr, connNodePort, rttNodePort uint16) []svcPort {
	return []svcPort{
		{service: service, portName: "conn", vip: vip, port: kit.ConnPort,
			backend: netip.AddrPortFrom(backend, kit.ConnPort), nodePort: connNodePort},
		{service: service, portName: "rtt", vip: vip, port: kit.SockperfPort,
			backend: netip.AddrPortFrom(backend, kit.SockperfPort), nodePort: rttNodePort},
	}
}

// writeBraidServices writes ports as the JSON `braid service apply -f`
// reads.
func writeBraidServices(path string, ports []svcPort) error {
	svcs := make([]store.Service, 0, len(ports))
	for _, p := range ports {
		s := store.Service{Name: p.braidName(), VIP: p.vip, Port: p.port, Protocol: store.TCP, Type: store.ClusterIP,
			Backends: []store.Backend{{IP: p.backend.Addr(), Port: p.backend.Port()}}}
		if p.nodePort != 0 {
			s.Type, s.NodePort = store.NodePort, p.nodePort
		}
		svcs = append(svcs, s)
	}
	b, err := json.Marshal(svcs)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}
