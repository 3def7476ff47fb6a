package store

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// Node.Validate and Peer.Validate: what each field must be, and the error
// naming the field (the CLI maps it to its flag).
func TestValidate(t *testing.T) {
	good := Node{Name: "n1", NodeIP: netip.MustParseAddr("198.18.0.1"), PodCIDR: netip.MustParsePrefix("198.19.1.0/24"), Device: "eth0"}
	for _, tc := range []struct {
		name  string
		edit  func(*Node)
		field string // "" for valid
		says  string
	}{
		{"valid", func(*Node) {}, "", ""},
		{"/30 is the smallest", func(n *Node) { n.PodCIDR = netip.MustParsePrefix("198.19.1.0/30") }, "", ""},
		{"Kubernetes-style name", func(n *Node) { n.Name = "ip-10-0-0-1.eu-west-1.compute.internal" }, "", ""},
		{"empty name", func(n *Node) { n.Name = "" }, FieldName, "is not a node name"},
		{"name with a slash", func(n *Node) { n.Name = "a/b" }, FieldName, "is not a node name"},
		{"name with a space", func(n *Node) { n.Name = "a b" }, FieldName, "is not a node name"},
		{"name too long", func(n *Node) { n.Name = strings.Repeat("a", 254) }, FieldName, "is not a node name"},
		{"no node IP", func(n *Node) { n.NodeIP = netip.Addr{} }, FieldNodeIP, "is not an IPv4 address"},
		{"IPv6 node IP", func(n *Node) { n.NodeIP = netip.MustParseAddr("2001:db8::1") }, FieldNodeIP, "is not an IPv4 address"},
		{"IPv4-mapped node IP", func(n *Node) { n.NodeIP = netip.MustParseAddr("::ffff:198.18.0.1") }, FieldNodeIP, "is not an IPv4 address"},
		{"unspecified node IP", func(n *Node) { n.NodeIP = netip.MustParseAddr("0.0.0.0") }, FieldNodeIP, "is not an IPv4 address"},
		{"no pod CIDR", func(n *Node) { n.PodCIDR = netip.Prefix{} }, FieldPodCIDR, "is not an IPv4 CIDR"},
		{"IPv6 pod CIDR", func(n *Node) { n.PodCIDR = netip.MustParsePrefix("fd00::/64") }, FieldPodCIDR, "is not an IPv4 CIDR"},
		{"host bits", func(n *Node) { n.PodCIDR = netip.MustParsePrefix("198.19.1.1/24") }, FieldPodCIDR, "has host bits set; did you mean 198.19.1.0/24?"},
		{"/31", func(n *Node) { n.PodCIDR = netip.MustParsePrefix("198.19.1.0/31") }, FieldPodCIDR, "too small"},
		{"pod CIDR holds the node IP", func(n *Node) { n.PodCIDR = netip.MustParsePrefix("198.18.0.0/24") }, FieldPodCIDR, "holds the node's own IP 198.18.0.1"},
		{"pod CIDR is everything", func(n *Node) { n.PodCIDR = netip.MustParsePrefix("0.0.0.0/0") }, FieldPodCIDR, "holds the node's own IP"},
		{"no device", func(n *Node) { n.Device = "" }, FieldDevice, "is not an interface name"},
		{"device too long", func(n *Node) { n.Device = "abcdefghijklmnop" }, FieldDevice, "is not an interface name"},
		{"device with a colon", func(n *Node) { n.Device = "eth0:1" }, FieldDevice, "is not an interface name"},
		{"device ..", func(n *Node) { n.Device = ".." }, FieldDevice, "is not an interface name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := good
			tc.edit(&n)
			check := func(what string, err error, field string) {
				t.Helper()
				if field == "" {
					if err != nil {
						t.Errorf("%s %+v: %v", what, n, err)
					}
					return
				}
				var inv *InvalidNodeError
				if !errors.As(err, &inv) || inv.Field != field || !strings.Contains(err.Error(), tc.says) {
					t.Errorf("%s %+v: %v; want the %s refused, saying %q", what, n, err, field, tc.says)
				}
			}
			check("Node.Validate", n.Validate(), tc.field)
			// A peer has no device; all else is the same.
			peerField := tc.field
			if peerField == FieldDevice {
				peerField = ""
			}
			check("Peer.Validate", n.Peer().Validate(), peerField)
			// ValidateUnassigned leaves the pod CIDR to the datastore.
			unassigned := tc.field
			if unassigned == FieldPodCIDR {
				unassigned = ""
			}
			check("Node.ValidateUnassigned", n.ValidateUnassigned(), unassigned)
		})
	}
}

// The store refuses an invalid identity or peer and a peer whose pod CIDR
// holds this node's IP (issue 12 item 7: the node would lose its network)
// or whose IP is in this node's pod CIDR, from every entry: SetIdentity,
// PutPeer and the agent's SyncPeers.
func TestStoreValidates(t *testing.T) {
	s, _ := openTemp(t)
	self := Node{Name: "n1", NodeIP: netip.MustParseAddr("198.18.0.1"), PodCIDR: netip.MustParsePrefix("198.19.1.0/24"), Device: "eth0"}
	bad := self
	bad.Device = "no/device"
	if err := s.Update(func(tx *Tx) error { return tx.SetIdentity(bad) }); err == nil {
		t.Error("SetIdentity took an invalid device")
	}
	if err := s.Update(func(tx *Tx) error { return tx.SetIdentity(self) }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p    Peer
		says string
	}{
		{peer("n2", "198.18.1.1", "198.18.0.0/24"), "pod CIDR 198.18.0.0/24 of node n2 holds node n1 (this node)'s IP 198.18.0.1"},
		{peer("n2", "198.20.0.1", "198.18.0.0/16"), "holds node n1 (this node)'s IP"},
		{peer("n2", "198.19.1.7", "198.19.2.0/24"), "node IP 198.19.1.7 of node n2 is in node n1 (this node)'s pod CIDR"},
		{peer("n2", "198.18.0.2", "198.19.2.1/24"), "has host bits set"},
		{peer("", "198.18.0.2", "198.19.2.0/24"), "is not a node name"},
	} {
		err := s.Update(func(tx *Tx) error { return tx.PutPeer(tc.p) })
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("PutPeer(%+v): %v; want %q", tc.p, err, tc.says)
		}
		var res SyncResult
		err = s.Update(func(tx *Tx) (err error) { res, err = tx.SyncPeers([]Peer{tc.p}); return err })
		if err != nil || len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0], tc.says) {
			t.Errorf("SyncPeers(%+v): %+v %v; want it skipped saying %q", tc.p, res, err, tc.says)
		}
	}
	// Between peers too: n3's pod CIDR holds n2's IP.
	var res SyncResult
	err := s.Update(func(tx *Tx) (err error) {
		res, err = tx.SyncPeers([]Peer{peer("n2", "198.18.0.6", "198.19.2.0/24"), peer("n3", "198.18.0.9", "198.18.0.4/30")})
		return err
	})
	if err != nil || res.Changed != 1 || len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0], "holds node n2's IP 198.18.0.6") {
		t.Errorf("SyncPeers of n2 and n3: %+v %v", res, err)
	}
	var peers []Peer
	if err := s.View(func(tx *Tx) (err error) { peers, err = tx.Peers(); return err }); err != nil || len(peers) != 1 || peers[0].Name != "n2" {
		t.Errorf("peers after the refusals: %+v %v", peers, err)
	}
}
