// Package vethebpf is the veth-ebpf plugin's integration suite: real
// namespaces, the real plugin and braid binaries driven through libcni, and
// real traffic, checked the way a user would check them.
package vethebpf

import (
	"errors"
	"strings"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/plugins/counters"
	"github.com/containernetworking/cni/pkg/types"
)

const (
	plugin   = "veth-ebpf"
	conflist = "node-local.conflist"
)

// Counter indices of bpf/veth_ebpf.c.
const (
	cntRedirectPeer = int(counters.VethEbpfCounterCNT_REDIRECT_PEER)
	cntDropSpoofIP  = int(counters.VethEbpfCounterCNT_DROP_SPOOF_IP)
	cntDropSpoofMAC = int(counters.VethEbpfCounterCNT_DROP_SPOOF_MAC)
)

// setup builds a one-node topology and the node's veth-ebpf chain.
func setup(t *testing.T, edits ...harness.Edit) (*harness.Node, *harness.Chain) {
	t.Helper()
	n := harness.New(t).AddNode(t)
	return n, n.Conflist(t, conflist, edits...)
}

// requireMentions fails t unless err is a CNI error whose message contains s.
func requireMentions(t *testing.T, err error, s string) {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("want a CNI error mentioning %q, got %v", s, err)
	}
	if !strings.Contains(e.Msg, s) {
		t.Fatalf("CNI error %d %q does not mention %q", e.Code, e.Msg, s)
	}
}

// inNetns runs fn inside ns and fails t on error.
func inNetns(t *testing.T, ns *harness.NS, fn func() error) {
	t.Helper()
	if err := ns.Do(fn); err != nil {
		t.Fatalf("in %s: %v", ns, err)
	}
}
