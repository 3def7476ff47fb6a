package main

import (
	"fmt"

	"github.com/braid-cni/braid/core/bpffs"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/core/tcx"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/spf13/cobra"
)

// nodeStatus is what `braid status` reports.
type nodeStatus struct {
	Node            *store.Node `json:"node"`
	Initialized     bool        `json:"initialized"`
	BPFFSMounted    bool        `json:"bpffsMounted"`
	Endpoints       int         `json:"endpoints"`
	Allocations     int         `json:"allocations"`
	EndpointMapFill int         `json:"endpointMapFill"`
	EndpointMapMax  int         `json:"endpointMapMax"`
	Problems        []string    `json:"problems"`
}

func statusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "what this node is doing: identity, endpoints, maps, problems",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			s, err := collectStatus(g)
			if err != nil {
				return err
			}
			t := table{header: []string{"FIELD", "VALUE"}, json: s}
			if s.Node != nil {
				t.rows = append(t.rows, []string{"node", s.Node.Name}, []string{"node IP", s.Node.NodeIP.String()},
					[]string{"pod CIDR", s.Node.PodCIDR.String()}, []string{"device", s.Node.Device})
			}
			t.rows = append(t.rows,
				[]string{"bpffs", fmt.Sprint(s.BPFFSMounted)},
				[]string{"endpoints", fmt.Sprint(s.Endpoints)},
				[]string{"allocations", fmt.Sprint(s.Allocations)},
				[]string{"endpoint map", fmt.Sprintf("%d/%d", s.EndpointMapFill, s.EndpointMapMax)})
			for _, p := range s.Problems {
				t.rows = append(t.rows, []string{"problem", p})
			}
			return g.print(stdout(), t)
		},
	}
}

func collectStatus(g *globals) (*nodeStatus, error) {
	s := &nodeStatus{BPFFSMounted: bpffs.IsMounted(g.bpfRoot), EndpointMapMax: maps.EndpointsMax, Problems: []string{}}
	st, err := g.openStore()
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var eps []store.Endpoint
	err = st.View(func(tx *store.Tx) error {
		if n, err := tx.Node(); err == nil {
			s.Node, s.Initialized = &n, true
		} else {
			s.Problems = append(s.Problems, err.Error())
		}
		eps, err = tx.Endpoints()
		if err != nil {
			return err
		}
		allocs, err := tx.Allocations()
		s.Endpoints, s.Allocations = len(eps), len(allocs)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.Problems = append(s.Problems, goneVeths(eps)...)
	if !s.BPFFSMounted {
		s.Problems = append(s.Problems, "bpffs is not mounted at "+g.bpfRoot)
		return s, nil
	}
	m, err := maps.OpenEndpoints(g.bpfRoot)
	if err != nil {
		s.Problems = append(s.Problems, err.Error())
		return s, nil
	}
	defer m.Close()
	all, err := m.All()
	if err != nil {
		return nil, err
	}
	s.EndpointMapFill = len(all)
	if len(all) != s.Endpoints {
		s.Problems = append(s.Problems, fmt.Sprintf("endpoint map holds %d entries, the store %d endpoints: run GC", len(all), s.Endpoints))
	}
	s.Problems = append(s.Problems, antiSpoofingOrder(g.bpfRoot, eps)...)
	return s, nil
}

// antiSpoofingOrder reports each pod whose veth-ebpf from_container does
// not run first on its host veth: a chained plugin's program ahead of it
// would redirect the pod's packets before their source is checked.
func antiSpoofingOrder(bpfRoot string, eps []store.Endpoint) []string {
	var out []string
	for _, ep := range eps {
		pin := bpffs.LinkPin(bpfRoot, "veth-ebpf", ep.HostIfName+"_ingress")
		if tcx.Verify(pin, ep.HostIfIndex) != nil {
			continue // a missing attachment is CHECK's and sync's to find
		}
		if err := tcx.VerifyFirst(pin, ep.HostIfIndex, tcx.Ingress); err != nil {
			out = append(out, fmt.Sprintf("pod %s (%s): anti-spoofing does not run first on %s: %v (run braid sync)", ep.Key(), ep.IPv4, ep.HostIfName, err))
		}
	}
	return out
}

// goneVeths reports each endpoint whose host veth no longer exists (or is
// another interface by now): the pod is unreachable and its record stale.
func goneVeths(eps []store.Endpoint) []string {
	var out []string
	for _, ep := range eps {
		if l, err := netlinksafe.LinkByName(ep.HostIfName); err != nil || l.Attrs().Index != ep.HostIfIndex {
			out = append(out, fmt.Sprintf("endpoint %s (%s): host veth %s is gone (run GC or DEL)", ep.Key(), ep.IPv4, ep.HostIfName))
		}
	}
	return out
}
