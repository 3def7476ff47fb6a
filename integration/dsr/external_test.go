package dsr

// External services (Kubernetes externalIPs, LoadBalancer ingress IPs):
// an outside client whose route to the VIP points at a node reaches
// VIP:port through it, balanced like a node port.

import (
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/integration/harness"
	"github.com/vishvananda/netlink"
)

// external adds service s (External) on every node and syncs.
func (c *cluster) external(t *testing.T, s store.Service) {
	t.Helper()
	s.External = true
	b, err := json.Marshal([]store.Service{s})
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range c.nodes {
		f := filepath.Join(n.Dir, "external-"+s.Name+".json")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		n.Braid(t, "service", "apply", "-f", f)
		c.chains[i].RequireSync(t)
	}
}

// routeVia points h's route to vip at node n (the underlay's routers, or
// BGP, would).
func routeVia(t *testing.T, h *harness.Host, vip netip.Addr, n *harness.Node) {
	t.Helper()
	err := h.Do(func() error {
		return netlink.RouteReplace(&netlink.Route{
			Dst: &net.IPNet{IP: vip.AsSlice(), Mask: net.CIDRMask(32, 32)}, Gw: n.IP.AsSlice()})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func backendsOf(pods ...*harness.Pod) []store.Backend {
	var out []store.Backend
	for _, p := range pods {
		out = append(out, store.Backend{IP: p.IP, Port: backendPort})
	}
	return out
}

func TestExternalService(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"dsr", "snat"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, nativeConflist, dsrKeys(map[string]any{"mode": mode}))
			web := c.backend(t, 2, "web")
			near := c.backend(t, 1, "near")
			vip := netip.MustParseAddr("198.18.100.20")
			local := netip.MustParseAddr("198.18.100.21")
			here := netip.MustParseAddr("198.18.100.22")
			for _, proto := range both {
				c.external(t, store.Service{Name: "web-" + proto, VIP: vip, Port: 80, Protocol: proto, Backends: backendsOf(web)})
			}
			c.external(t, store.Service{Name: "local", VIP: local, Port: 80, Protocol: "tcp", Backends: backendsOf(web),
				Type: store.NodePort, NodePort: 30090, ExternalTrafficPolicy: "Local"})
			c.external(t, store.Service{Name: "here", VIP: here, Port: 80, Protocol: "tcp", Backends: backendsOf(near)})
			n1 := c.node(1)

			// A backend on another node, through node 1.
			routeVia(t, c.client, vip, n1)
			before := n1.CounterSet(t, "dsr")
			for _, proto := range both {
				svc := netip.AddrPortFrom(vip, 80)
				a, err := request{proto: proto}.do(c.client, svc)
				if err != nil {
					t.Fatalf("%s to %s through node 1: %v", proto, svc, err)
				}
				if a.backend != "web" || a.from != svc {
					t.Errorf("%s answer %+v: want web, from %s", proto, a, svc)
				}
				wantPeer := c.client.IP
				if mode == "snat" {
					wantPeer = n1.IP
				}
				if a.peer.Addr() != wantPeer {
					t.Errorf("%s: the backend saw %s, want %s", proto, a.peer, wantPeer)
				}
			}
			after := n1.CounterSet(t, "dsr")
			t.Logf("node 1's dsr counters: %s", harness.FormatDeltas(after.Since(before)))
			fwd := "dsr_forward"
			if mode == "snat" {
				fwd = "snat_forward"
			}
			if after.Delta(t, before, fwd) < 2 {
				t.Errorf("%s rose by %d, want at least 2", fwd, after.Delta(t, before, fwd))
			}

			// A backend on node 1 itself.
			routeVia(t, c.client, here, n1)
			if a, err := (request{proto: "tcp"}).do(c.client, netip.AddrPortFrom(here, 80)); err != nil || a.backend != "near" ||
				a.from != netip.AddrPortFrom(here, 80) || a.peer.Addr() != c.client.IP {
				t.Errorf("local backend: %+v, %v", a, err)
			}

			// Local policy: node 1 has no backend and refuses; node 2 serves,
			// the client's address kept.
			routeVia(t, c.client, local, n1)
			before = n1.CounterSet(t, "dsr")
			if _, err := (request{proto: "tcp", timeout: 1e9}).do(c.client, netip.AddrPortFrom(local, 80)); err == nil {
				t.Error("Local policy: node 1, with no local backend, served")
			}
			if d := n1.CounterSet(t, "dsr").Delta(t, before, "drop_no_backend"); d == 0 {
				t.Error("Local policy: node 1's drop_no_backend did not rise")
			}
			routeVia(t, c.client, local, c.node(2))
			a, err := (request{proto: "tcp"}).do(c.client, netip.AddrPortFrom(local, 80))
			if err != nil || a.backend != "web" || a.peer.Addr() != c.client.IP || a.from != netip.AddrPortFrom(local, 80) {
				t.Errorf("Local policy through node 2: %+v, %v", a, err)
			}
		})
	}
}
