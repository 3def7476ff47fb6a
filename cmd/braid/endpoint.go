package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/store"
	"github.com/spf13/cobra"
)

func endpointCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "endpoint", Short: "pods attached on this node (from the store)"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "list endpoints recorded in the node store",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			st, err := g.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			var eps []store.Endpoint
			if err := st.View(func(tx *store.Tx) error { eps, err = tx.Endpoints(); return err }); err != nil {
				return err
			}
			slices.SortFunc(eps, func(a, b store.Endpoint) int { return a.IPv4.Compare(b.IPv4) })
			t := table{header: []string{"ID", "IP", "POD", "CONTAINER", "IFNAME", "HOST-IF", "IFINDEX", "POD-MAC"}, json: eps}
			if eps == nil {
				t.json = []store.Endpoint{}
			}
			for _, e := range eps {
				t.rows = append(t.rows, []string{strconv.Itoa(int(e.ID)), e.IPv4.String(), podOf(e), short(e.ContainerID), e.IfName,
					e.HostIfName, strconv.Itoa(e.HostIfIndex), e.PodMAC})
			}
			return g.print(stdout(), t)
		},
	})
	return cmd
}

func bpfCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "bpf", Short: "inspect the node's pinned BPF maps"}
	ep := &cobra.Command{Use: "endpoint", Short: "the shared endpoint map"}
	ep.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "list the endpoint map's entries",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			m, err := maps.OpenEndpoints(g.bpfRoot)
			if err != nil {
				return err
			}
			defer m.Close()
			all, err := m.All()
			if err != nil {
				return err
			}
			return g.print(stdout(), endpointMapTable(all))
		},
	})
	cmd.AddCommand(ep)
	return cmd
}

type endpointEntry struct {
	IP      netip.Addr `json:"ip"`
	ID      uint32     `json:"id"`
	Ifindex uint32     `json:"ifindex"`
	PodMAC  string     `json:"podMAC"`
	HostMAC string     `json:"hostMAC"`
}

func endpointMapTable(all map[netip.Addr]maps.EndpointInfo) table {
	entries := []endpointEntry{}
	for ip, v := range all {
		entries = append(entries, endpointEntry{IP: ip, ID: v.ID, Ifindex: v.Ifindex, PodMAC: maps.MAC(v.PodMAC), HostMAC: maps.MAC(v.HostMAC)})
	}
	slices.SortFunc(entries, func(a, b endpointEntry) int { return a.IP.Compare(b.IP) })
	t := table{header: []string{"IP", "ID", "IFINDEX", "POD-MAC", "HOST-MAC"}, json: entries}
	for _, e := range entries {
		t.rows = append(t.rows, []string{e.IP.String(), fmt.Sprint(e.ID), fmt.Sprint(e.Ifindex), e.PodMAC, e.HostMAC})
	}
	return t
}

// podOf is the endpoint's Kubernetes pod as "namespace/name", "-" when
// the runtime did not say.
func podOf(e store.Endpoint) string {
	if e.PodName == "" {
		return "-"
	}
	return e.PodNamespace + "/" + e.PodName
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
