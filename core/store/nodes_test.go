package store

import (
	"net/netip"
	"strings"
	"testing"
)

// PutPeer (braid node add) refuses a node whose pod CIDR overlaps this
// node's or another's, or whose node IP is taken, naming both nodes; an
// update of the same node is not a clash with itself.
func TestPutPeerRefusesClashes(t *testing.T) {
	s, _ := openTemp(t)
	self := Node{Name: "n1", NodeIP: netip.MustParseAddr("198.18.0.1"), PodCIDR: netip.MustParsePrefix("198.19.1.0/24"), Device: "eth0"}
	err := s.Update(func(tx *Tx) error {
		if err := tx.SetIdentity(self); err != nil {
			return err
		}
		return tx.PutPeer(peer("n2", "198.18.0.2", "198.19.2.0/24"))
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p    Peer
		want []string
	}{
		{peer("n3", "198.18.0.3", "198.19.2.128/25"), []string{"overlaps", "198.19.2.0/24", "n2"}},
		{peer("n3", "198.18.0.3", "198.19.0.0/16"), []string{"overlaps", "n1 (this node)"}},
		{peer("n3", "198.18.0.2", "198.19.3.0/24"), []string{"node IP 198.18.0.2", "n2"}},
		{peer("n3", "198.18.0.1", "198.19.3.0/24"), []string{"node IP 198.18.0.1", "this node"}},
		{Peer{Name: "n3", NodeIP: netip.MustParseAddr("198.18.0.3"), PodCIDR: netip.MustParsePrefix("198.19.3.1/24")}, []string{"host bits"}},
	} {
		err := s.Update(func(tx *Tx) error { return tx.PutPeer(tc.p) })
		if err == nil {
			t.Errorf("PutPeer(%+v) accepted", tc.p)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("PutPeer(%+v): %q does not mention %q", tc.p, err, w)
			}
		}
	}
	if err := s.Update(func(tx *Tx) error { return tx.PutPeer(peer("n2", "198.18.0.22", "198.19.2.0/24")) }); err != nil {
		t.Errorf("moving n2 to a new node IP: %v", err)
	}
	var peers []Peer
	s.View(func(tx *Tx) (err error) { peers, err = tx.Peers(); return })
	if len(peers) != 1 || peers[0].NodeIP.String() != "198.18.0.22" {
		t.Errorf("peers after the refusals: %+v, want only n2 at 198.18.0.22", peers)
	}
}

// braid node init checks its identity against the known nodes, and
// SetIdentity will not move the pod CIDR under existing endpoints.
func TestIdentityChecks(t *testing.T) {
	s, _ := openTemp(t)
	self := Node{Name: "n1", NodeIP: netip.MustParseAddr("198.18.0.1"), PodCIDR: netip.MustParsePrefix("198.19.1.0/24"), Device: "eth0"}
	err := s.Update(func(tx *Tx) error {
		if err := tx.SetIdentity(self); err != nil {
			return err
		}
		return tx.PutPeer(peer("n2", "198.18.0.2", "198.19.2.0/24"))
	})
	if err != nil {
		t.Fatal(err)
	}
	clash := self
	clash.PodCIDR = netip.MustParsePrefix("198.19.2.0/23")
	s.View(func(tx *Tx) error {
		if err := tx.PeerClash(clash); err == nil || !strings.Contains(err.Error(), "n2") {
			t.Errorf("PeerClash(%s) = %v, want the overlap with n2", clash.PodCIDR, err)
		}
		if err := tx.PeerClash(self); err != nil {
			t.Errorf("PeerClash(self) = %v", err)
		}
		return nil
	})
	err = s.Update(func(tx *Tx) error {
		return tx.PutEndpoint(&Endpoint{ContainerID: "c", IfName: "eth0", IPv4: netip.MustParseAddr("198.19.1.2"), HostIfName: "brdx"})
	})
	if err != nil {
		t.Fatal(err)
	}
	moved := self
	moved.PodCIDR = netip.MustParsePrefix("198.19.7.0/24")
	err = s.Update(func(tx *Tx) error { return tx.SetIdentity(moved) })
	if err == nil || !strings.Contains(err.Error(), "1 endpoints") {
		t.Errorf("moving the pod CIDR under an endpoint: %v, want a refusal", err)
	}
}
