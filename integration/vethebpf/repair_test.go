package vethebpf

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
)

// TestCheckNamesTheBreak breaks one part of an attachment per pod and
// expects CHECK to say which; DEL must still clean up each broken one.
func TestCheckNamesTheBreak(t *testing.T) {
	n, c := setup(t)
	for _, tc := range []struct {
		name    string
		breakIt func(t *testing.T, p *harness.Pod, hostIf string)
		want    func(p *harness.Pod, hostIf string) string
	}{
		{"pod default route", func(t *testing.T, p *harness.Pod, _ string) {
			inNetns(t, p.NS, func() error {
				return netlink.RouteDel(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}})
			})
		}, func(*harness.Pod, string) string { return "default route" }},
		{"pod address", func(t *testing.T, p *harness.Pod, _ string) {
			inNetns(t, p.NS, func() error {
				l, err := netlink.LinkByName(p.IfName)
				if err != nil {
					return err
				}
				return netlink.AddrDel(l, &netlink.Addr{IPNet: &net.IPNet{IP: p.IP.AsSlice(), Mask: net.CIDRMask(32, 32)}})
			})
		}, func(p *harness.Pod, _ string) string { return "lacks address " + p.IP.String() }},
		{"pod gateway neighbour", func(t *testing.T, p *harness.Pod, _ string) {
			inNetns(t, p.NS, func() error { return delNeigh(p.IfName, net.IPv4(169, 254, 1, 1)) })
		}, func(*harness.Pod, string) string { return "neighbour entry for the gateway 169.254.1.1 is missing" }},
		{"node route to the pod", func(t *testing.T, p *harness.Pod, hostIf string) {
			inNetns(t, n.NS, func() error {
				return netlink.RouteDel(&netlink.Route{Dst: &net.IPNet{IP: p.IP.AsSlice(), Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK})
			})
		}, func(p *harness.Pod, hostIf string) string {
			return "no route to pod " + p.IP.String() + "/32 on " + hostIf
		}},
		{"node neighbour for the pod", func(t *testing.T, p *harness.Pod, hostIf string) {
			inNetns(t, n.NS, func() error { return delNeigh(hostIf, p.IP.AsSlice()) })
		}, func(p *harness.Pod, _ string) string {
			return "neighbour entry for pod " + p.IP.String() + " is missing"
		}},
		{"host veth down", func(t *testing.T, _ *harness.Pod, hostIf string) {
			inNetns(t, n.NS, func() error {
				l, err := netlink.LinkByName(hostIf)
				if err != nil {
					return err
				}
				return netlink.LinkSetDown(l)
			})
		}, func(_ *harness.Pod, hostIf string) string { return hostIf + " is down" }},
		{"link pin", func(t *testing.T, _ *harness.Pod, hostIf string) {
			if err := os.Remove(ingressPin(n, hostIf)); err != nil {
				t.Fatal(err)
			}
		}, func(_ *harness.Pod, hostIf string) string { return "no link pinned at " + ingressPin(n, hostIf) }},
		{"endpoint map entry", func(t *testing.T, p *harness.Pod, _ string) {
			m, err := ebpf.LoadPinnedMap(filepath.Join(n.BPFRoot, "endpoints"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if err := m.Delete(p.IP.As4()); err != nil {
				t.Fatal(err)
			}
		}, func(p *harness.Pod, _ string) string { return "endpoint map has no entry for " + p.IP.String() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := c.AddPod(t, strings.ReplaceAll(tc.name, " ", "-"))
			hostIf, _ := p.HostIf()
			tc.breakIt(t, p, hostIf)
			requireMentions(t, p.Check(), tc.want(p, hostIf))
			if err := p.Del(); err != nil {
				t.Fatalf("DEL of the broken attachment: %v", err)
			}
		})
	}
	n.RequireClean(t)
}

// delNeigh removes the neighbour entry for ip on the interface called ifName.
func delNeigh(ifName string, ip net.IP) error {
	l, err := netlink.LinkByName(ifName)
	if err != nil {
		return err
	}
	return netlink.NeighDel(&netlink.Neigh{LinkIndex: l.Attrs().Index, IP: ip, Family: netlink.FAMILY_V4})
}

func ingressPin(n *harness.Node, hostIf string) string {
	return filepath.Join(n.BPFRoot, plugin, "links", hostIf+"_ingress")
}

// TestGC forgets two of three pods in libcni's cache, as a runtime that
// lost its state would, so that only the plugin's GC can find them, and adds
// the host veth of an ADD that crashed before it wrote the store.
func TestGC(t *testing.T) {
	n, c := setup(t, harness.CNIVersion("1.1.0"))
	keep, lost1, lost2 := c.AddPod(t, "keep"), c.AddPod(t, "lost1"), c.AddPod(t, "lost2")
	for _, p := range []*harness.Pod{lost1, lost2} {
		if err := p.ForgetCache(); err != nil {
			t.Fatal(err)
		}
	}
	const stray = harness.HostVethPrefix + "0123456789ab"
	inNetns(t, n.NS, func() error {
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: stray}, PeerName: "straypeer"})
	})

	if err := c.GC(keep); err != nil {
		t.Fatalf("GC: %v", err)
	}

	keepIf, _ := keep.HostIf()
	var eps []endpoint
	n.BraidJSON(t, &eps, "endpoint", "list")
	if len(eps) != 1 || eps[0].ContainerID != keep.ContainerID {
		t.Errorf("endpoints after GC: %+v, want only %s", eps, keep.ContainerID)
	}
	if s := n.BraidStatus(t); s.Endpoints != 1 || s.Allocations != 1 || s.EndpointMapFill != 1 || len(s.Problems) != 0 {
		t.Errorf("braid status after GC: %+v", s)
	}
	if veths := n.HostVeths(t); !slices.Equal(veths, []string{keepIf}) {
		t.Errorf("host veths after GC: %v, want only %s", veths, keepIf)
	}
	if pins := n.LinkPins(t); len(pins) != 2 || !strings.Contains(pins[0], keepIf) || !strings.Contains(pins[1], keepIf) {
		t.Errorf("pinned links after GC: %v, want only %s's", pins, keepIf)
	}
	if err := keep.Check(); err != nil {
		t.Errorf("CHECK of the kept pod after GC: %v", err)
	}
	if err := keep.Ping(n.IP); err != nil {
		t.Errorf("kept pod after GC: %v", err)
	}
	if err := keep.Del(); err != nil {
		t.Fatal(err)
	}
	n.RequireClean(t)
}

// TestDelegatedIPAM takes addresses from the reference host-local plugin
// and checks that the verbs reach it: DEL releases its reservation, CHECK
// consults it, GC releases the addresses of the attachments it removes.
// (host-local v1.9.1 implements neither GC nor STATUS, so their forwarding
// only has to succeed here; GC's release comes from an IPAM DEL for each
// attachment collected.)
func TestDelegatedIPAM(t *testing.T) {
	n := harness.New(t).AddNode(t)
	dataDir := filepath.Join(n.Dir, "host-local")
	c := n.Conflist(t, conflist, harness.CNIVersion("1.1.0"), harness.PluginKeys(map[string]any{"ipam": map[string]any{
		"type":    "host-local",
		"dataDir": dataDir,
		"ranges": [][]map[string]any{{{
			"subnet": n.PodCIDR.String(), "rangeStart": "198.19.1.100", "rangeEnd": "198.19.1.120",
		}}},
	}}))
	// host-local keeps one file per reserved address under <dataDir>/<network>.
	reservation := func(ip netip.Addr) string { return filepath.Join(dataDir, c.List.Name, ip.String()) }

	if err := c.Status(); err != nil {
		t.Fatalf("STATUS: %v", err)
	}
	a, b := c.AddPod(t, "a"), c.AddPod(t, "b")
	if a.IP != netip.MustParseAddr("198.19.1.100") || b.IP != netip.MustParseAddr("198.19.1.101") {
		t.Errorf("addresses %s and %s, want host-local's first two", a.IP, b.IP)
	}
	if err := a.Ping(b.IP); err != nil {
		t.Error(err)
	}
	if err := a.Check(); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := a.Del(); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if _, err := os.Stat(reservation(a.IP)); !os.IsNotExist(err) {
		t.Errorf("host-local still reserves %s after DEL (%v)", a.IP, err)
	}

	if err := os.Remove(reservation(b.IP)); err != nil {
		t.Fatal(err)
	}
	requireMentions(t, b.Check(), "host-local")

	gone := c.AddPod(t, "gone")
	for _, p := range []*harness.Pod{b, gone} {
		if err := p.ForgetCache(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(reservation(gone.IP)); err != nil {
		t.Fatalf("host-local does not reserve %s after ADD: %v", gone.IP, err)
	}
	if err := c.GC(); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if _, err := os.Stat(reservation(gone.IP)); !os.IsNotExist(err) {
		t.Errorf("host-local still reserves %s after GC removed its attachment (%v)", gone.IP, err)
	}
	n.RequireClean(t)
}
