package store

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzService: a service as `braid service apply` or the agent hands it
// over (JSON). Validate never panics; a service it accepts is stored and
// read back as it was, with an id.
func FuzzService(f *testing.F) {
	for _, s := range []string{
		`{"name":"web","vip":"198.18.100.10","port":80,"protocol":"TCP","backends":[{"ip":"198.19.1.2","port":8080}]}`,
		`{"name":"np","vip":"198.18.100.11","port":80,"protocol":"udp","type":"NodePort","nodePort":30080,"externalTrafficPolicy":"Local"}`,
		`{"name":"dup","vip":"198.18.100.12","port":1,"protocol":"tcp","backends":[{"ip":"198.19.1.2","port":1},{"ip":"198.19.1.2","port":1}]}`,
		`{"name":"v6","vip":"2001:db8::1","port":80,"protocol":"tcp"}`,
		`{"name":"a b","vip":"198.18.100.13","port":80,"protocol":"tcp"}`,
		`{"name":"x","vip":"198.18.100.14","port":0,"protocol":"sctp","type":"LoadBalancer"}`,
	} {
		f.Add([]byte(s))
	}
	st, err := Open(f.TempDir(), time.Second)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	f.Fuzz(func(t *testing.T, raw []byte) {
		var s Service
		if json.Unmarshal(raw, &s) != nil || s.Validate() != nil {
			return
		}
		if !s.VIP.Is4() || s.Port == 0 || (s.Protocol != TCP && s.Protocol != UDP) || len(s.Backends) > MaxBackends ||
			(s.Type != ClusterIP && s.Type != NodePort) || (s.Type == NodePort && s.NodePort == 0) ||
			(s.Type == ClusterIP && (s.NodePort != 0 || s.ExternalTrafficPolicy != "")) {
			t.Fatalf("Validate accepted %+v", s)
		}
		err := st.Update(func(tx *Tx) error {
			stored, err := tx.PutService(s)
			if err != nil {
				return nil // a conflict with an earlier input is a fair refusal
			}
			back, err := tx.Service(s.Name)
			if err != nil {
				return err
			}
			if back.ID == 0 || back.ID != stored.ID || back.VIP != s.VIP || back.Port != s.Port || len(back.Backends) != len(s.Backends) {
				t.Errorf("stored %+v, read back %+v", s, back)
			}
			_, err = tx.DeleteService(s.Name)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
