package main

// syncServices against fake tables that log every write and check, after
// each one, what a connect() racing with the sync would see: every service
// entry's slots 0..count-1 must be in the backend table.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	coremaps "github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/store"
)

// fakeMaps holds the two fake tables and what happened to them.
type fakeMaps struct {
	t     *testing.T
	svc   map[sockLbLbServiceKey]sockLbLbService
	np    map[sockLbLbNodeportKey]sockLbLbService
	be    map[sockLbLbBackendKey]sockLbLbBackend
	log   []string // "put svc <vip:port> id=.. count=..", "del be <id>/<slot>", …
	full  int      // the backend table refuses writes once it holds this many (0: never)
	steps int
}

func newFakeMaps(t *testing.T) *fakeMaps {
	return &fakeMaps{t: t, svc: map[sockLbLbServiceKey]sockLbLbService{}, np: map[sockLbLbNodeportKey]sockLbLbService{},
		be: map[sockLbLbBackendKey]sockLbLbBackend{}}
}

// check is the invariant: a connect at this point finds each slot it can pick.
func (f *fakeMaps) check() {
	f.t.Helper()
	f.steps++
	for k, v := range f.svc {
		f.checkSlots(keyString(k), v)
	}
	for k, v := range f.np {
		f.checkSlots(fmt.Sprintf("node port %d/%d", coremaps.Unport16(k.Port), k.Proto), v)
	}
}

func (f *fakeMaps) checkSlots(name string, v sockLbLbService) {
	f.t.Helper()
	for slot := range v.Count {
		if _, ok := f.be[sockLbLbBackendKey{Id: v.Id, Slot: slot}]; !ok {
			f.t.Fatalf("after step %d (%s): %s has count %d but slot %d is missing",
				f.steps, f.log[len(f.log)-1], name, v.Count, slot)
		}
	}
}

func (f *fakeMaps) sync(services ...store.Service) (*plugin.Report, error) {
	r := &plugin.Report{}
	f.log = nil
	err := syncServices(tables{
		svc: fakeTable[sockLbLbServiceKey, sockLbLbService]{f, f.svc, "svc", 0},
		np:  fakeTable[sockLbLbNodeportKey, sockLbLbService]{f, f.np, "np", 0},
		be:  fakeTable[sockLbLbBackendKey, sockLbLbBackend]{f, f.be, "be", f.full},
	}, services, r)
	return r, err
}

func (f *fakeMaps) mustSync(services ...store.Service) *plugin.Report {
	f.t.Helper()
	r, err := f.sync(services...)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

// requireHolds checks that the tables hold exactly services.
func (f *fakeMaps) requireHolds(services ...store.Service) {
	f.t.Helper()
	wantSvc := map[sockLbLbServiceKey]sockLbLbService{}
	wantNP := map[sockLbLbNodeportKey]sockLbLbService{}
	wantBe := map[sockLbLbBackendKey]sockLbLbBackend{}
	for _, s := range services {
		v := sockLbLbService{Id: s.ID, Count: uint32(len(s.Backends)), Affinity: s.AffinityTimeout}
		wantSvc[serviceKey(s)] = v
		if s.NodePort != 0 {
			wantNP[sockLbLbNodeportKey{Port: coremaps.Port16(s.NodePort), Proto: s.ProtoNumber()}] = v
		}
		for i, b := range s.Backends {
			wantBe[sockLbLbBackendKey{Id: s.ID, Slot: uint32(i)}] = sockLbLbBackend{Ip: coremaps.IPv4Word(b.IP), Port: coremaps.Port16(b.Port)}
		}
	}
	if !maps.Equal(f.svc, wantSvc) {
		f.t.Errorf("service table:\n have %v\n want %v", f.svc, wantSvc)
	}
	if !maps.Equal(f.np, wantNP) {
		f.t.Errorf("node port table:\n have %v\n want %v", f.np, wantNP)
	}
	if !maps.Equal(f.be, wantBe) {
		f.t.Errorf("backend table:\n have %v\n want %v", f.be, wantBe)
	}
}

type fakeTable[K, V comparable] struct {
	f    *fakeMaps
	m    map[K]V
	name string
	full int
}

func (t fakeTable[K, V]) PutIfChanged(k K, v V) (bool, error) {
	if have, ok := t.m[k]; ok && have == v {
		return false, nil
	}
	if _, ok := t.m[k]; !ok && t.full > 0 && len(t.m) >= t.full {
		return false, errors.New("argument list too long")
	}
	t.m[k] = v
	t.f.log = append(t.f.log, fmt.Sprintf("put %s %v", t.name, k))
	t.f.check()
	return true, nil
}

func (t fakeTable[K, V]) DeleteExcept(keep map[K]V) ([]K, error) {
	var stale []K
	for k, v := range t.m {
		if want, ok := keep[k]; !ok || want != v {
			stale = append(stale, k)
		}
	}
	for _, k := range stale {
		delete(t.m, k)
		t.f.log = append(t.f.log, fmt.Sprintf("del %s %v", t.name, k))
		t.f.check()
	}
	return stale, nil
}

func (t fakeTable[K, V]) MaxEntries() uint32 { return uint32(t.full) }

func keyString(k sockLbLbServiceKey) string {
	return fmt.Sprintf("%s:%d/%d", coremaps.WordIPv4(k.Vip), coremaps.Unport16(k.Port), k.Proto)
}

func be(s string) store.Backend {
	ap := netip.MustParseAddrPort(s)
	return store.Backend{IP: ap.Addr(), Port: ap.Port()}
}

func backends(n int) []store.Backend {
	var out []store.Backend
	for i := range n {
		out = append(out, be(fmt.Sprintf("198.19.%d.%d:8080", 1+i/200, 10+i%200)))
	}
	return out
}

func TestSyncServices(t *testing.T) {
	f := newFakeMaps(t)
	web := svc(1, "web", "198.18.100.1:80", store.TCP, backends(3)...)
	dns := svc(2, "dns", "198.18.100.1:53", store.UDP, backends(2)...)
	empty := svc(3, "empty", "198.18.100.2:80", store.TCP)

	t.Run("from empty", func(t *testing.T) {
		f.t = t
		r := f.mustSync(web, dns, empty)
		f.requireHolds(web, dns, empty)
		if len(r.Changes) != 3 {
			t.Errorf("changes %q, want one per service", r.Changes)
		}
	})
	t.Run("again changes nothing", func(t *testing.T) {
		f.t = t
		r := f.mustSync(web, dns, empty)
		if len(r.Changes) != 0 || len(f.log) != 0 {
			t.Errorf("a sync with nothing to do changed %q, wrote %q", r.Changes, f.log)
		}
	})
	t.Run("backends shrink", func(t *testing.T) {
		f.t = t
		web.Backends = backends(1)
		r := f.mustSync(web, dns, empty)
		f.requireHolds(web, dns, empty)
		if len(r.Changes) != 1 || !strings.Contains(r.Changes[0], "web") || !strings.Contains(r.Changes[0], "1 backends") {
			t.Errorf("changes %q, want web's new count", r.Changes)
		}
	})
	t.Run("backends grow", func(t *testing.T) {
		f.t = t
		web.Backends = backends(5)
		f.mustSync(web, dns, empty)
		f.requireHolds(web, dns, empty)
		// Slots before the count that uses them.
		last := slices.Index(f.log, "put svc "+fmt.Sprint(serviceKey(web)))
		if last < 0 || last != len(f.log)-1 {
			t.Errorf("writes %q: want web's slots before web's entry", f.log)
		}
	})
	t.Run("backend replaced in place", func(t *testing.T) {
		f.t = t
		web.Backends[2] = be("198.19.9.9:8080")
		f.mustSync(web, dns, empty)
		f.requireHolds(web, dns, empty)
		if len(f.log) != 1 || !strings.HasPrefix(f.log[0], "put be") {
			t.Errorf("writes %q: want only slot 2 rewritten", f.log)
		}
	})
	t.Run("emptied and refilled", func(t *testing.T) {
		f.t = t
		dns.Backends = nil
		f.mustSync(web, dns, empty)
		f.requireHolds(web, dns, empty)
		dns.Backends = backends(2)
		f.mustSync(web, dns, empty)
		f.requireHolds(web, dns, empty)
	})
	t.Run("service removed", func(t *testing.T) {
		f.t = t
		r := f.mustSync(dns, empty)
		f.requireHolds(dns, empty)
		if !slices.ContainsFunc(r.Changes, func(c string) bool { return strings.Contains(c, "removed 1 services") }) {
			t.Errorf("changes %q, want the removal", r.Changes)
		}
	})
	t.Run("same VIP, new id", func(t *testing.T) {
		// Deleted and added again: the store gives a new id; the old id's
		// slots must go, the entry must never point at missing slots.
		f.t = t
		f.mustSync(web, dns, empty)
		web2 := web
		web2.ID = 9
		web2.Backends = backends(4)
		f.mustSync(web2, dns, empty)
		f.requireHolds(web2, dns, empty)
	})
	t.Run("node port and affinity", func(t *testing.T) {
		// The node port entry is the service's value, written after its
		// slots, changed with it, removed with it.
		f.t = t
		np := svc(20, "np", "198.18.100.3:80", store.TCP, backends(2)...)
		np.Type, np.NodePort, np.AffinityTimeout = store.NodePort, 30080, 10
		f.mustSync(web, dns, np)
		f.requireHolds(web, dns, np)
		np.Backends = backends(4)
		f.mustSync(web, dns, np)
		f.requireHolds(web, dns, np)
		np.Backends = backends(1)
		f.mustSync(web, dns, np)
		f.requireHolds(web, dns, np)
		r := f.mustSync(web, dns)
		f.requireHolds(web, dns)
		if !slices.ContainsFunc(r.Changes, func(c string) bool { return strings.Contains(c, "removed 1 node ports") }) {
			t.Errorf("changes %q, want the node port's removal", r.Changes)
		}
	})
	t.Run("everything removed", func(t *testing.T) {
		f.t = t
		f.mustSync()
		f.requireHolds()
	})
	t.Run("many services, summarized", func(t *testing.T) {
		f.t = t
		var many []store.Service
		for i := range 500 {
			many = append(many, svc(uint32(100+i), fmt.Sprintf("s%03d", i),
				fmt.Sprintf("198.18.100.%d:%d", 10+i/100, 1000+i%100), store.TCP, backends(1+i%3)...))
		}
		r := f.mustSync(many...)
		f.requireHolds(many...)
		if len(r.Changes) != 1 || !strings.Contains(r.Changes[0], "wrote 500 services") {
			t.Errorf("changes %q, want one line summarizing 500 services", r.Changes)
		}
	})
	t.Run("backend table full", func(t *testing.T) {
		f := newFakeMaps(t)
		f.full = 4
		a := svc(1, "a", "198.18.100.1:80", store.TCP, backends(3)...)
		b := svc(2, "b", "198.18.100.1:81", store.TCP, backends(3)...)
		_, err := f.sync(a, b)
		if err == nil || !strings.Contains(err.Error(), "service b") || !strings.Contains(err.Error(), "backend map") {
			t.Fatalf("sync beyond the backend table: %v, want an error naming service b", err)
		}
		// b's entry was never written: its slots could not be.
		if _, ok := f.svc[serviceKey(b)]; ok {
			t.Errorf("service b is in the table without its backends")
		}
		if _, ok := f.svc[serviceKey(a)]; !ok {
			t.Errorf("service a is not in the table")
		}
	})
}

// TestServiceKeyLayout: the key the programs build from struct
// bpf_sock_addr is address and port in network byte order, the protocol
// number, a zero pad.
func TestServiceKeyLayout(t *testing.T) {
	for _, tc := range []struct {
		s     store.Service
		bytes string
	}{
		{svc(1, "w", "198.18.100.1:80", store.TCP), "c6126401 0050 06 00"},
		{svc(1, "d", "198.18.100.254:53", store.UDP), "c61264fe 0035 11 00"},
		{svc(1, "h", "198.18.100.7:65535", store.TCP), "c6126407 ffff 06 00"},
	} {
		k := serviceKey(tc.s)
		var b []byte
		b = binary.NativeEndian.AppendUint32(b, k.Vip)
		b = binary.NativeEndian.AppendUint16(b, k.Port)
		b = append(b, k.Proto, k.Pad)
		got := fmt.Sprintf("%x %x %x %x", b[0:4], b[4:6], b[6:7], b[7:8])
		if got != tc.bytes {
			t.Errorf("%s:%d/%s: key bytes %s, want %s", tc.s.VIP, tc.s.Port, tc.s.Protocol, got, tc.bytes)
		}
	}
}
