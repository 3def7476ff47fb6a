// Package socklb is the sock-lb plugin's integration suite: nodes as network
// namespaces on an underlay, the real plugins and braid binaries driven
// through libcni and the CLI, and clients that are processes of a pod: in
// the pod's netns and in the node's cgroup (sock-lb's cgroupRoot), where a
// runtime would put them.
package socklb

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/sockprobe"
	"github.com/braid-cni/braid/plugins/counters"
	"github.com/containernetworking/cni/pkg/types"
)

func TestMain(m *testing.M) {
	sockprobe.Main() // the clients are this binary, re-executed
	os.Exit(m.Run())
}

const plugin = "sock-lb"

// Counter indices of bpf/sock_lb.c.
const (
	cntConnectLB      = int(counters.SockLBCounterCNT_CONNECT_LB)
	cntSendmsgLB      = int(counters.SockLBCounterCNT_SENDMSG_LB)
	cntRefusedEmpty   = int(counters.SockLBCounterCNT_REFUSED_EMPTY)
	cntRevNAT         = int(counters.SockLBCounterCNT_REVNAT)
	cntSkippedNetns   = int(counters.SockLBCounterCNT_SKIPPED_NETNS)
	cntBackendMissing = int(counters.SockLBCounterCNT_BACKEND_MISSING)
	cntNodePortLB     = int(counters.SockLBCounterCNT_NODEPORT_LB)
	cntMappedLB       = int(counters.SockLBCounterCNT_MAPPED_LB)
	cntAffinityHit    = int(counters.SockLBCounterCNT_AFFINITY_HIT)
	cntAffinityStale  = int(counters.SockLBCounterCNT_AFFINITY_STALE)
)

// Ports the backend pods serve on.
const (
	tcpPort = 8080
	udpPort = 5353
)

// hooks are sock-lb's cgroup attachments, pinned as links/dev-cgroup_<hook>.
var hooks = []string{"connect4", "sendmsg4", "recvmsg4", "getpeername4",
	"connect6", "sendmsg6", "recvmsg6", "getpeername6"}

func hookPin(hook string) []string { return []string{plugin, "links", "dev-cgroup_" + hook} }

// backend is a pod serving TCP and UDP under its name.
type backend struct {
	*harness.Pod
	tcp, udp netip.AddrPort
}

func serve(t *testing.T, p *harness.Pod) backend {
	t.Helper()
	p.ServeTCP(t, fmt.Sprintf(":%d", tcpPort), p.Name)
	p.ServeUDP(t, fmt.Sprintf(":%d", udpPort), p.Name)
	return backend{Pod: p, tcp: netip.AddrPortFrom(p.IP, tcpPort), udp: netip.AddrPortFrom(p.IP, udpPort)}
}

// service is a store.Service for the CLI's JSON.
func service(name, vipPort, proto string, backends ...netip.AddrPort) store.Service {
	ap := netip.MustParseAddrPort(vipPort)
	s := store.Service{Name: name, VIP: ap.Addr(), Port: ap.Port(), Protocol: proto, Backends: []store.Backend{}}
	for _, b := range backends {
		s.Backends = append(s.Backends, store.Backend{IP: b.Addr(), Port: b.Port()})
	}
	return s
}

// apply writes svcs to a file and runs `braid service apply -f` on n.
func apply(t *testing.T, n *harness.Node, svcs ...store.Service) {
	t.Helper()
	n.Braid(t, "service", "apply", "-f", writeJSON(t, svcs))
}

func writeJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "services.json")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func do(t *testing.T, p *sockprobe.Probe, req sockprobe.Request) []sockprobe.Result {
	t.Helper()
	return harness.ProbeDo(t, p, req)
}

func one(t *testing.T, p *sockprobe.Probe, req sockprobe.Request) sockprobe.Result {
	t.Helper()
	return do(t, p, req)[0]
}

// requireMentions fails t unless err is a CNI error whose message contains
// every one of substrs.
func requireMentions(t *testing.T, err error, substrs ...string) {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("want a CNI error mentioning %q, got %v", substrs, err)
	}
	for _, s := range substrs {
		if !strings.Contains(e.Msg, s) {
			t.Fatalf("CNI error %d %q does not mention %q", e.Code, e.Msg, s)
		}
	}
}
