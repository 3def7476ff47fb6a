package main

import (
	"strings"
	"testing"

	"github.com/braid-cni/braid/core/store"
)

func TestCheckNodePorts(t *testing.T) {
	for _, tc := range []struct {
		typ       string
		port      uint16
		portRange string
		err       string
	}{
		{store.NodePort, 30000, "30000-32767", ""},
		{store.NodePort, 32767, "30000-32767", ""},
		{store.NodePort, 29999, "30000-32767", "service s: node port 29999 is outside the node-port range 30000-32767"},
		{store.NodePort, 32768, "30000-32767", "outside"},
		{store.NodePort, 80, "1-1024", ""},
		{store.NodePort, 0, "30000-32767", ""}, // missing: the store says so
		{store.ClusterIP, 0, "30000-32767", ""},
		{store.NodePort, 30080, "32767-30000", "not a port range"},
		{store.NodePort, 30080, "0-100", "not a port range"},
		{store.NodePort, 30080, "1-70000", "not a port range"},
		{store.NodePort, 30080, "30000-32767x", "not a port range"},
		{store.NodePort, 30080, "1-2-3", "not a port range"},
		{store.NodePort, 30080, "30000", "not a port range"},
		{store.ClusterIP, 0, "30000-32767x", "--node-port-range"}, // a bad flag is bad whatever the services
	} {
		err := checkNodePorts(tc.portRange, store.Service{Name: "s", Type: tc.typ, NodePort: tc.port})
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("checkNodePorts(%q, %s %d) = %v, want %q", tc.portRange, tc.typ, tc.port, err, tc.err)
		}
	}
}

// `braid service apply` checks every NodePort service of the file, not
// only the first.
func TestCheckNodePortsEveryService(t *testing.T) {
	in := store.Service{Name: "in", Type: store.NodePort, NodePort: 30080}
	out := store.Service{Name: "out", Type: store.NodePort, NodePort: 8080}
	if err := checkNodePorts(store.DefaultNodePortRange, in, out); err == nil || !strings.Contains(err.Error(), "service out: node port 8080") {
		t.Errorf("apply with one service outside the range: %v", err)
	}
	if err := checkNodePorts("8000-31000", in, out); err != nil {
		t.Errorf("both inside: %v", err)
	}
}
