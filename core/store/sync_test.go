package store

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func peer(name, ip, cidr string) Peer {
	return Peer{Name: name, NodeIP: netip.MustParseAddr(ip), PodCIDR: netip.MustParsePrefix(cidr)}
}

func TestSyncPeers(t *testing.T) {
	s, _ := openTemp(t)
	self := Node{Name: "n1", NodeIP: netip.MustParseAddr("198.18.0.1"), PodCIDR: netip.MustParsePrefix("198.19.1.0/24"), Device: "eth0"}
	var res SyncResult
	err := s.Update(func(tx *Tx) (err error) {
		if err := tx.SetNode(self); err != nil {
			return err
		}
		if err := tx.PutPeer(peer("gone", "198.18.0.9", "198.19.9.0/24")); err != nil {
			return err
		}
		res, err = tx.SyncPeers([]Peer{
			peer("n2", "198.18.0.2", "198.19.2.0/24"),
			peer("n3", "198.18.0.3", "198.19.2.0/25"), // overlaps n2 (earlier by name)
			peer("n4", "198.18.0.1", "198.19.4.0/24"), // this node's IP
			peer("n5", "198.18.0.5", "198.19.5.0/24"),
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed != 3 || len(res.Skipped) != 2 { // gone removed, n2 and n5 added
		t.Errorf("result %+v, want 3 changes and 2 skipped", res)
	}
	var got []Peer
	s.View(func(tx *Tx) (err error) { got, err = tx.Peers(); return })
	if len(got) != 2 || got[0].Name != "n2" || got[1].Name != "n5" {
		t.Errorf("peers = %+v, want n2 and n5", got)
	}
	// The same again changes nothing.
	s.Update(func(tx *Tx) (err error) { res, err = tx.SyncPeers(got); return })
	if res.Changed != 0 || res.Unchanged != 2 {
		t.Errorf("resync: %+v, want no change", res)
	}
}

func svc(name, vip string, port uint16, backends ...string) Service {
	s := Service{Name: name, VIP: netip.MustParseAddr(vip), Port: port, Protocol: TCP, Backends: []Backend{}}
	for _, b := range backends {
		ap := netip.MustParseAddrPort(b)
		s.Backends = append(s.Backends, Backend{IP: ap.Addr(), Port: ap.Port()})
	}
	return s
}

func TestSyncServicesKeepsIDsAndSkipsConflicts(t *testing.T) {
	s, _ := openTemp(t)
	var old Service
	err := s.Update(func(tx *Tx) (err error) {
		old, err = tx.PutService(svc("web", "198.18.100.1", 80))
		if err != nil {
			return err
		}
		_, err = tx.PutService(svc("gone", "198.18.100.9", 80))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var res SyncResult
	err = s.Update(func(tx *Tx) (err error) {
		res, err = tx.SyncServices([]Service{
			svc("web", "198.18.100.1", 80, "198.19.1.2:8080"),
			svc("api", "198.18.100.2", 81),
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed != 3 { // gone deleted, web changed, api added
		t.Errorf("result %+v", res)
	}
	var got map[string]Service
	s.View(func(tx *Tx) error {
		all, err := tx.Services()
		got = map[string]Service{}
		for _, x := range all {
			got[x.Name] = x
		}
		return err
	})
	if len(got) != 2 || got["web"].ID != old.ID || len(got["web"].Backends) != 1 || got["api"].ID == 0 || got["api"].ID == old.ID {
		t.Errorf("services = %+v, want web (id %d kept, 1 backend) and api (new id)", got, old.ID)
	}

	// Conflicts: the first by name wins; an invalid one is skipped.
	s.Update(func(tx *Tx) (err error) {
		res, err = tx.SyncServices([]Service{
			svc("web", "198.18.100.1", 80),
			svc("aaa", "198.18.100.1", 80),
			{Name: "broken"},
		})
		return err
	})
	if len(res.Skipped) != 2 || !strings.Contains(res.Skipped[1], "already service aaa's") {
		t.Errorf("skipped = %q, want broken and web (aaa has its address)", res.Skipped)
	}
}

// The agent's path skips what the datapath's maps cannot hold (reporting
// it) instead of storing it and failing every later ADD.
func TestSyncServicesSkipsBeyondCapacity(t *testing.T) {
	s, _ := openTemp(t)
	var want []Service
	for i := range MaxNodePorts + 1 {
		np := svc(fmt.Sprintf("np%05d", i), fmt.Sprintf("198.18.%d.%d", 100+i/250, 1+i%250), 80, "198.19.1.2:8080")
		np.Type, np.NodePort = NodePort, uint16(1+i)
		want = append(want, np)
	}
	var res SyncResult
	if err := s.Update(func(tx *Tx) (err error) { res, err = tx.SyncServices(want); return }); err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0], "np04096 does not fit") || !strings.Contains(res.Skipped[0], "node-port map") {
		t.Errorf("skipped %q, want np04096 refused for the node-port map", res.Skipped)
	}
	var got []Service
	s.View(func(tx *Tx) (err error) { got, err = tx.Services(); return })
	if len(got) != MaxNodePorts {
		t.Errorf("%d services stored, want %d", len(got), MaxNodePorts)
	}
}
