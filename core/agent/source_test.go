package agent

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/datastore"
	"github.com/braid-cni/braid/core/store"
)

// fakeSource hands the agent the views a test sends it.
type fakeSource struct {
	views   chan datastore.View
	resumed store.Node
}

func (f *fakeSource) Run(ctx context.Context, apply func(datastore.View)) {
	for {
		select {
		case <-ctx.Done():
			return
		case v := <-f.views:
			apply(v)
		}
	}
}

func (f *fakeSource) Connected() bool        { return true }
func (f *fakeSource) Resume(last store.Node) { f.resumed = last }

// The agent follows any Source: it resumes it from the node store's
// identity, refuses a Self that is not valid (reported, nothing written:
// the node stays uninitialized), writes a valid one (with --device in
// place of the Source's) and the peers into the node store, skipping a
// peer whose pod CIDR holds this node's IP.
func TestAgentFollowsSource(t *testing.T) {
	src := &fakeSource{views: make(chan datastore.View)}
	a := testAgent(t)
	a.cfg.Source, a.cfg.Node.Device = src, "eth9"
	a.views = make(chan datastore.View, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go src.Run(ctx, a.offer)
	go a.applyViews(ctx)
	node := func() (store.Node, error) {
		var n store.Node
		var nerr error
		err := a.view(func(tx *store.Tx) error { n, nerr = tx.Node(); return nil })
		return n, errors.Join(err, nerr)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 5s", what)
			}
		}
	}
	problem := func(says string) func() bool {
		return func() bool {
			return slices.ContainsFunc(a.health().Problems, func(p string) bool { return strings.Contains(p, says) })
		}
	}

	self := store.Node{Name: "n1", NodeIP: netip.MustParseAddr("198.18.0.1"), PodCIDR: netip.MustParsePrefix("198.18.0.0/24")}
	src.views <- datastore.View{Self: self}
	waitFor("problem with the node's pod CIDR", problem("holds the node's own IP"))
	if _, err := node(); !errors.Is(err, store.ErrNotInitialized) {
		t.Fatalf("after an invalid Self the store's node: %v, want uninitialized", err)
	}

	self.PodCIDR = netip.MustParsePrefix("198.19.1.0/24")
	peers := []store.Peer{
		{Name: "n2", NodeIP: netip.MustParseAddr("198.18.0.2"), PodCIDR: netip.MustParsePrefix("198.19.2.0/24")},
		{Name: "n3", NodeIP: netip.MustParseAddr("198.18.1.3"), PodCIDR: netip.MustParsePrefix("198.18.0.0/24")},
	}
	src.views <- datastore.View{Self: self, Peers: peers}
	waitFor("the node's identity in the store", func() bool { n, err := node(); return err == nil && n.Name == "n1" })
	want := self
	want.Device = "eth9"
	if n, _ := node(); n != want {
		t.Errorf("node store identity %+v, want %+v", n, want)
	}
	waitFor("n3 refused", problem("pod CIDR 198.18.0.0/24 of node n3 holds node n1 (this node)'s IP"))
	var have []store.Peer
	if err := a.view(func(tx *store.Tx) (err error) { have, err = tx.Peers(); return err }); err != nil || len(have) != 1 || have[0] != peers[0] {
		t.Errorf("peers %+v %v, want n2 alone", have, err)
	}

	// A restarted agent resumes its Source from the store's identity.
	if err := a.prepareIdentity(); err != nil || src.resumed != want {
		t.Errorf("Resume got %+v (%v), want %+v", src.resumed, err, want)
	}
}
