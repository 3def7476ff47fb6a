package vethebpf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
)

// endpoint and mapEntry are the parts of `braid endpoint list -o json` and
// `braid bpf endpoint list -o json` the suite checks.
type endpoint struct {
	ContainerID  string     `json:"containerID"`
	PodNamespace string     `json:"podNamespace"`
	PodName      string     `json:"podName"`
	IPv4         netip.Addr `json:"ipv4"`
	HostIfName   string     `json:"hostIfName"`
	HostIfIndex  int        `json:"hostIfIndex"`
}

type mapEntry struct {
	IP      netip.Addr `json:"ip"`
	Ifindex int        `json:"ifindex"`
}

func TestAddCheckDel(t *testing.T) {
	n, c := setup(t)
	p := c.AddPod(t, "a")
	hostIf, _ := p.HostIf()
	if !n.PodCIDR.Contains(p.IP) || !strings.HasPrefix(hostIf, harness.HostVethPrefix) {
		t.Fatalf("ADD result: address %s (want one in %s), host interface %q", p.IP, n.PodCIDR, hostIf)
	}
	if err := p.Check(); err != nil {
		t.Fatalf("CHECK after ADD: %v", err)
	}

	var eps []endpoint
	var entries []mapEntry
	n.BraidJSON(t, &eps, "endpoint", "list")
	n.BraidJSON(t, &entries, "bpf", "endpoint", "list")
	if len(eps) != 1 || eps[0].ContainerID != p.ContainerID || eps[0].IPv4 != p.IP || eps[0].HostIfName != hostIf {
		t.Errorf("braid endpoint list: %+v, want %s at %s on %s", eps, p.ContainerID, p.IP, hostIf)
	}
	if len(entries) != 1 || len(eps) != 1 || entries[0].IP != p.IP || entries[0].Ifindex != eps[0].HostIfIndex {
		t.Errorf("braid bpf endpoint list: %+v, want %s on the host veth", entries, p.IP)
	}
	wantPins := []string{plugin + "/links/" + hostIf + "_egress", plugin + "/links/" + hostIf + "_ingress"}
	if pins := n.LinkPins(t); !slices.Equal(pins, wantPins) {
		t.Errorf("pinned links %v, want %v", pins, wantPins)
	}
	if s := n.BraidStatus(t); s.Endpoints != 1 || s.Allocations != 1 || s.EndpointMapFill != 1 || len(s.Problems) != 0 {
		t.Errorf("braid status: %+v", s)
	}

	if err := p.Del(); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	n.RequireClean(t)
	if err := p.Do(func() error { _, err := net.InterfaceByName(p.IfName); return err }); err == nil {
		t.Errorf("the pod still has %s after DEL", p.IfName)
	}
}

func TestSequentialPods(t *testing.T) {
	n, c := setup(t)
	pods := make([]*harness.Pod, 50)
	for i := range pods {
		pods[i] = c.AddPod(t, fmt.Sprintf("s%d", i))
	}
	requireDistinctAddrs(t, pods)
	if s := n.BraidStatus(t); s.Endpoints != len(pods) || s.EndpointMapFill != len(pods) {
		t.Errorf("braid status after %d ADDs: %+v", len(pods), s)
	}
	for _, p := range pods {
		if err := p.Del(); err != nil {
			t.Fatalf("DEL %s: %v", p.Name, err)
		}
	}
	n.RequireClean(t)
}

func TestParallelPods(t *testing.T) {
	n, c := setup(t)
	pods := make([]*harness.Pod, 20)
	for i := range pods {
		pods[i] = c.NewPod(t, fmt.Sprintf("p%d", i))
	}
	each := func(verb string, fn func(*harness.Pod) error) {
		t.Helper()
		errs := make([]error, len(pods))
		var wg sync.WaitGroup
		for i, p := range pods {
			wg.Go(func() { errs[i] = fn(p) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("%s %s: %v", verb, pods[i].Name, err)
			}
		}
	}
	each("ADD", (*harness.Pod).Add)
	requireDistinctAddrs(t, pods)
	if s := n.BraidStatus(t); s.Endpoints != len(pods) || s.EndpointMapFill != len(pods) || len(s.Problems) != 0 {
		t.Errorf("braid status after %d parallel ADDs: %+v", len(pods), s)
	}
	if err := pods[0].Ping(pods[len(pods)-1].IP); err != nil {
		t.Errorf("pods added in parallel cannot talk: %v", err)
	}
	each("DEL", (*harness.Pod).Del)
	n.RequireClean(t)
}

func requireDistinctAddrs(t *testing.T, pods []*harness.Pod) {
	t.Helper()
	seen := map[netip.Addr]string{}
	for _, p := range pods {
		if other, ok := seen[p.IP]; ok {
			t.Fatalf("%s and %s both got %s", other, p.Name, p.IP)
		}
		seen[p.IP] = p.Name
	}
}

func TestDelIsIdempotent(t *testing.T) {
	n, c := setup(t)
	t.Run("twice", func(t *testing.T) {
		p := c.AddPod(t, "twice")
		for i := range 2 {
			if err := p.Del(); err != nil {
				t.Fatalf("DEL #%d: %v", i+1, err)
			}
		}
		n.RequireClean(t)
	})
	t.Run("after the netns is gone", func(t *testing.T) {
		p := c.AddPod(t, "gone")
		if err := p.RemoveNetns(); err != nil {
			t.Fatal(err)
		}
		if err := p.Del(); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		n.RequireClean(t)
	})
	t.Run("never added", func(t *testing.T) {
		if err := c.NewPod(t, "never").Del(); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		n.RequireClean(t)
	})
}

func TestRepeatedAddKeepsAddress(t *testing.T) {
	n, c := setup(t)
	p := c.AddPod(t, "a")
	first := p.IP
	if err := p.Add(); err != nil {
		t.Fatalf("second ADD: %v", err)
	}
	if p.IP != first {
		t.Errorf("second ADD gave %s, the first %s", p.IP, first)
	}
	if err := p.Check(); err != nil {
		t.Errorf("CHECK after the second ADD: %v", err)
	}
	if err := p.Ping(n.IP); err != nil {
		t.Errorf("after the second ADD: %v", err)
	}
	if s := n.BraidStatus(t); s.Endpoints != 1 || s.Allocations != 1 || len(s.Problems) != 0 {
		t.Errorf("braid status: %+v", s)
	}
	if err := p.Del(); err != nil {
		t.Fatal(err)
	}
	n.RequireClean(t)
}

// TestCNIVersions runs the verbs with every spec version the plugin
// announces, since runtimes in use today send each of them.
func TestCNIVersions(t *testing.T) {
	harness.RequireVersions(t, "veth-ebpf", "0.4.0", "1.0.0", "1.1.0")
	n := harness.New(t).AddNode(t)
	for _, v := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			c := n.Conflist(t, conflist, harness.CNIVersion(v))
			p := c.AddPod(t, "v"+strings.ReplaceAll(v, ".", ""))
			if err := p.Check(); err != nil {
				t.Errorf("CHECK: %v", err)
			}
			if err := p.Ping(n.IP); err != nil {
				t.Error(err)
			}
			if err := p.Del(); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			n.RequireClean(t)
		})
	}
}

// TestFailedAddLeavesNothing makes ADD fail half-way, after the address is
// allocated, because the pod already has an interface of the requested name.
func TestFailedAddLeavesNothing(t *testing.T) {
	n, c := setup(t)
	p := c.NewPod(t, "taken")
	inNetns(t, p.NS, func() error {
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.IfName}, PeerName: "other"})
	})
	requireMentions(t, p.Add(), "already exists")
	n.RequireClean(t)
	if err := p.Del(); err != nil {
		t.Fatalf("DEL after a failed ADD: %v", err)
	}
	n.RequireClean(t)
}

// TestMTU checks both ends of the pair get the node device's MTU by
// default, and the configured one when "mtu" is set.
func TestMTU(t *testing.T) {
	n, c := setup(t)
	for _, tc := range []struct {
		chain *harness.Chain
		want  int
	}{
		{c, 1500},
		{n.Conflist(t, conflist, harness.PluginKeys(map[string]any{"mtu": 1400})), 1400},
	} {
		p := tc.chain.AddPod(t, fmt.Sprintf("mtu%d", tc.want))
		hostIf, _ := p.HostIf()
		for _, end := range []struct {
			ns     *harness.NS
			ifName string
		}{{n.NS, hostIf}, {p.NS, p.IfName}} {
			inNetns(t, end.ns, func() error {
				l, err := netlink.LinkByName(end.ifName)
				if err == nil && l.Attrs().MTU != tc.want {
					err = fmt.Errorf("%s has MTU %d, want %d", end.ifName, l.Attrs().MTU, tc.want)
				}
				return err
			})
		}
		for _, i := range p.Result.Interfaces {
			if i.Mtu != tc.want {
				t.Errorf("ADD result: %s has MTU %d, want %d", i.Name, i.Mtu, tc.want)
			}
		}
	}
}

// The pod a Kubernetes runtime names in CNI_ARGS is kept with the endpoint
// and shown by `braid endpoint list`; arguments braid does not know are
// ignored (with IgnoreUnknown or without); a malformed CNI_ARGS fails ADD
// with code 4 and leaves nothing.
func TestPodArgs(t *testing.T) {
	n, c := setup(t)
	k8s := c.NewPod(t, "k8s")
	// As containerd's CRI passes them.
	k8s.Args = [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "shop"}, {"K8S_POD_NAME", "web-0"},
		{"K8S_POD_INFRA_CONTAINER_ID", k8s.ContainerID}, {"K8S_POD_UID", "6f1c1e0a-0000-4000-8000-000000000001"}}
	if err := k8s.Add(); err != nil {
		t.Fatalf("ADD with a Kubernetes runtime's CNI_ARGS: %v", err)
	}
	other := c.NewPod(t, "other")
	other.Args = [][2]string{{"SOMETHING_ELSE", "x"}}
	if err := other.Add(); err != nil {
		t.Fatalf("ADD with an unknown CNI_ARG and no IgnoreUnknown: %v", err)
	}
	plain := c.AddPod(t, "plain")

	var eps []endpoint
	n.BraidJSON(t, &eps, "endpoint", "list")
	pods := map[string]string{}
	for _, e := range eps {
		pods[e.ContainerID] = e.PodNamespace + "/" + e.PodName
	}
	if pods[k8s.ContainerID] != "shop/web-0" || pods[other.ContainerID] != "/" || pods[plain.ContainerID] != "/" || len(eps) != 3 {
		t.Errorf("endpoints' pods: %v", pods)
	}
	table := string(n.Braid(t, "endpoint", "list"))
	if !strings.Contains(table, "POD") || !strings.Contains(table, " shop/web-0 ") || strings.Count(table, " - ") != 2 {
		t.Errorf("braid endpoint list:\n%s", table)
	}

	// A pair without '=' of its own: libcni joins K=V, this value adds one.
	bad := c.NewPod(t, "bad")
	bad.Args = [][2]string{{"K8S_POD_NAME", "a=b"}}
	err := bad.Add()
	requireMentions(t, err, "CNI_ARGS")
	var e *types.Error
	if errors.As(err, &e) && e.Code != types.ErrInvalidEnvironmentVariables {
		t.Errorf("malformed CNI_ARGS: code %d, want %d", e.Code, types.ErrInvalidEnvironmentVariables)
	}
	for _, p := range []*harness.Pod{k8s, other, plain} {
		if err := p.Del(); err != nil {
			t.Fatalf("DEL %s: %v", p.Name, err)
		}
	}
	n.RequireClean(t)
}
