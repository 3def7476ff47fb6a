package etcdstore

import (
	"encoding/json"
	"net/netip"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/braid-cni/braid/core/store"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// FuzzDecodeValue feeds a member's decoder (state.apply, as the watch
// calls it) whatever another writer of etcd may have put under a node's or
// a service's key: it never panics; a value that is not JSON is a problem
// of the view named by its key, and nothing else; a value it takes is one
// entry, named as its key, and no problem (a value naming another entry
// than its key is a problem: a delete of the key could not find it); and a
// later delete of the key leaves nothing.
func FuzzDecodeValue(f *testing.F) {
	for _, v := range seedValues(f) {
		f.Add("n2", v, false)
		f.Add("web", v, true)
	}
	f.Add("", []byte(`{"name":""}`), false)
	f.Add("a/b", []byte(`{"name":"b","nodeIP":"198.18.0.2"}`), false)
	f.Add("a", []byte(`{"name":"b","nodeIP":"198.18.0.2"}`), false)
	f.Add("n2", []byte(`{"name":"n2","nodeIP":"::1","podCIDR":"198.19.2.1/24"}`), false)
	f.Add("n2", []byte(`{"name":"n2","podCIDR":"198.19.2.0/33"}`), false)
	f.Add("web", []byte(`{"name":"web","backends":[{"ip":"x"}]}`), true)
	f.Add("n2", []byte("{"), false)
	f.Add("n2", []byte(nil), false)
	c := &Client{prefix: DefaultPrefix}
	self := store.Node{Name: "n1", NodeIP: netip.MustParseAddr("198.18.0.1"), PodCIDR: netip.MustParsePrefix("198.19.1.0/24")}
	f.Fuzz(func(t *testing.T, name string, value []byte, service bool) {
		kind := kindNodes
		if service {
			kind = kindServices
		}
		key := c.key(kind, name)
		st := &state{nodes: map[string]store.Peer{}, services: map[string]store.Service{}, bad: map[string]string{}}
		if !st.apply(c, event(clientv3.EventTypePut, key, value)) {
			t.Fatalf("put of %s not taken for the node's", key)
		}
		v := st.view(self)
		entries := len(st.nodes) + len(st.services)
		switch {
		case !json.Valid(value):
			if entries != 0 || len(v.Problems) != 1 || !strings.HasPrefix(v.Problems[0], key+": ") {
				t.Fatalf("junk %q under %s: %d entries, problems %q", value, key, entries, v.Problems)
			}
		case len(v.Problems) == 0:
			if entries != 1 || entryName(t, value) != path.Base(key) {
				t.Fatalf("%q under %s: %d entries, named %q", value, key, entries, entryName(t, value))
			}
			if p := st.nodes[entryName(t, value)]; !service && p.Name != self.Name && !slices.Contains(v.Peers, p) {
				t.Fatalf("%q under %s: the view's peers are %v", value, key, v.Peers)
			}
		case entries != 0 || len(v.Problems) != 1:
			t.Fatalf("%q under %s: %d entries and problems %q", value, key, entries, v.Problems)
		}
		st.apply(c, event(clientv3.EventTypeDelete, key, nil))
		if left := st.view(self); len(left.Problems) != 0 || len(st.nodes)+len(st.services) != 0 {
			t.Fatalf("after deleting %s (%q): problems %q, nodes %v, services %v", key, value, left.Problems, st.nodes, st.services)
		}
	})
}

// entryName is the "name" of a value the decoder took.
func entryName(t *testing.T, value []byte) string {
	var e struct{ Name string }
	if err := json.Unmarshal(value, &e); err != nil {
		t.Fatalf("the decoder took %q, which is not an object with a name: %v", value, err)
	}
	return e.Name
}

// seedValues are values as braid writes them.
func seedValues(f *testing.F) [][]byte {
	var out [][]byte
	for _, v := range []any{
		store.Peer{Name: "n2", NodeIP: netip.MustParseAddr("198.18.0.2"), PodCIDR: netip.MustParsePrefix("198.19.2.0/24")},
		store.Service{Name: "web", VIP: netip.MustParseAddr("198.19.255.10"), Port: 80, Protocol: store.TCP, Type: store.NodePort, NodePort: 30080,
			Backends: []store.Backend{{IP: netip.MustParseAddr("198.19.2.7"), Port: 8080}}},
	} {
		b, err := json.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func event(typ mvccpb.Event_EventType, key string, value []byte) *clientv3.Event {
	return &clientv3.Event{Type: typ, Kv: &mvccpb.KeyValue{Key: []byte(key), Value: value}}
}
