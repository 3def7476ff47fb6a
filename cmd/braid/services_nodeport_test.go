package main

import (
	"strings"
	"testing"

	"github.com/braid-cni/braid/core/store"
)

func TestCheckNodePort(t *testing.T) {
	for _, tc := range []struct {
		typ       string
		port      uint16
		portRange string
		err       string
	}{
		{store.NodePort, 30000, "30000-32767", ""},
		{store.NodePort, 32767, "30000-32767", ""},
		{store.NodePort, 29999, "30000-32767", "outside the node-port range 30000-32767"},
		{store.NodePort, 32768, "30000-32767", "outside"},
		{store.NodePort, 80, "1-1024", ""},
		{store.NodePort, 0, "30000-32767", ""}, // missing: the store says so
		{store.ClusterIP, 80, "30000-32767", ""},
		{store.NodePort, 30080, "32767-30000", "not a port range"},
		{store.NodePort, 30080, "0-100", "not a port range"},
		{store.NodePort, 30080, "1-70000", "not a port range"},
		{store.NodePort, 30080, "30000-32767x", "not a port range"},
		{store.NodePort, 30080, "30000", "not a port range"},
	} {
		err := checkNodePort(tc.typ, tc.port, tc.portRange)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("checkNodePort(%s, %d, %q) = %v, want %q", tc.typ, tc.port, tc.portRange, err, tc.err)
		}
	}
}
