package ipam_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/ipam"
	"github.com/braid-cni/braid/core/store"
	"github.com/containernetworking/cni/pkg/types"
)

var (
	pfx = netip.MustParsePrefix
	ip  = netip.MustParseAddr
)

func TestBroadcast(t *testing.T) {
	for _, tc := range []struct{ cidr, want string }{
		{"198.19.1.0/24", "198.19.1.255"},
		{"198.19.1.77/24", "198.19.1.255"}, // host bits are ignored
		{"198.18.0.0/15", "198.19.255.255"},
		{"198.19.0.8/29", "198.19.0.15"},
		{"198.19.0.4/30", "198.19.0.7"},
		{"198.19.0.9/32", "198.19.0.9"},
		{"0.0.0.0/0", "255.255.255.255"},
	} {
		if got := ipam.Broadcast(pfx(tc.cidr)); got != ip(tc.want) {
			t.Errorf("Broadcast(%s) = %v, want %s", tc.cidr, got, tc.want)
		}
	}
}

func TestReserved(t *testing.T) {
	cidr := pfx("198.19.1.0/24")
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"198.19.1.0", true},   // network
		{"198.19.1.1", true},   // gateway
		{"198.19.1.255", true}, // broadcast
		{"198.19.1.2", false},
		{"198.19.1.254", false},
	} {
		if got := ipam.Reserved(cidr, ip(tc.ip)); got != tc.want {
			t.Errorf("Reserved(%s, %s) = %v, want %v", cidr, tc.ip, got, tc.want)
		}
	}
}

func openStore(t *testing.T) (*store.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := store.Open(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

// alloc allocates for owner in its own transaction.
func alloc(t *testing.T, s *store.Store, cidr netip.Prefix, owner string) (netip.Addr, error) {
	t.Helper()
	var a netip.Addr
	err := s.Update(func(tx *store.Tx) (err error) {
		a, err = ipam.Allocate(tx, cidr, owner)
		return err
	})
	return a, err
}

func mustAlloc(t *testing.T, s *store.Store, cidr netip.Prefix, owner string) netip.Addr {
	t.Helper()
	a, err := alloc(t, s, cidr, owner)
	if err != nil {
		t.Fatalf("allocate for %s: %v", owner, err)
	}
	return a
}

func release(t *testing.T, s *store.Store, a netip.Addr) {
	t.Helper()
	if err := s.Update(func(tx *store.Tx) error { return tx.Release(a) }); err != nil {
		t.Fatal(err)
	}
}

func TestAllocateSkipsReservedAndIsSticky(t *testing.T) {
	s, _ := openStore(t)
	cidr := pfx("198.19.1.0/24")
	first := mustAlloc(t, s, cidr, "a/eth0")
	if first != ip("198.19.1.2") {
		t.Errorf("first address = %v, want 198.19.1.2 (network and gateway skipped)", first)
	}
	if again := mustAlloc(t, s, cidr, "a/eth0"); again != first {
		t.Errorf("same owner got %v, then %v", first, again)
	}
	if second := mustAlloc(t, s, cidr, "b/eth0"); second != ip("198.19.1.3") {
		t.Errorf("second address = %v, want 198.19.1.3", second)
	}
	s.View(func(tx *store.Tx) error {
		if o := tx.AllocationOwner(first); o != "a/eth0" {
			t.Errorf("owner of %v = %q", first, o)
		}
		return nil
	})
}

func TestAllocateOwnerInOtherCIDR(t *testing.T) {
	s, _ := openStore(t)
	old := mustAlloc(t, s, pfx("198.19.1.0/24"), "a/eth0")
	// The node's pod CIDR changed: the owner gets an address in the new one.
	if got := mustAlloc(t, s, pfx("198.19.2.0/24"), "a/eth0"); got == old || !pfx("198.19.2.0/24").Contains(got) {
		t.Errorf("got %v, want an address of 198.19.2.0/24", got)
	}
}

func TestReleasedAddressNotReusedAtOnce(t *testing.T) {
	s, _ := openStore(t)
	cidr := pfx("198.19.1.0/24")
	a := mustAlloc(t, s, cidr, "a/eth0")
	release(t, s, a)
	b := mustAlloc(t, s, cidr, "b/eth0")
	if b == a {
		t.Fatalf("released %v was handed out again at once", a)
	}
	if b != a.Next() {
		t.Errorf("next address = %v, want %v (after the cursor)", b, a.Next())
	}
}

func TestAllocateExhaustionAndWrap(t *testing.T) {
	s, _ := openStore(t)
	cidr := pfx("198.19.0.8/29") // .8 network, .9 gateway, .15 broadcast
	var got []string
	for i := range 5 {
		got = append(got, mustAlloc(t, s, cidr, fmt.Sprintf("c%d/eth0", i)).String())
	}
	if want := "198.19.0.10 198.19.0.11 198.19.0.12 198.19.0.13 198.19.0.14"; strings.Join(got, " ") != want {
		t.Errorf("allocated %v, want %s", got, want)
	}

	_, err := alloc(t, s, cidr, "full/eth0")
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("allocation in a full /29: %v (%T), want a CNI error", err, err)
	}
	if e.Code != types.ErrTryAgainLater {
		t.Errorf("code = %d, want %d", e.Code, types.ErrTryAgainLater)
	}
	for _, want := range []string{"198.19.0.8/29", "exhausted", "5 addresses"} {
		if !strings.Contains(e.Msg, want) {
			t.Errorf("message %q does not contain %q", e.Msg, want)
		}
	}

	// A failed allocation records nothing.
	s.View(func(tx *store.Tx) error {
		if allocs, _ := tx.Allocations(); len(allocs) != 5 {
			t.Errorf("%d allocations after exhaustion, want 5", len(allocs))
		}
		return nil
	})

	// Freeing one makes it available again, found by wrapping past the end.
	release(t, s, ip("198.19.0.11"))
	if a := mustAlloc(t, s, cidr, "late/eth0"); a != ip("198.19.0.11") {
		t.Errorf("after release got %v, want 198.19.0.11", a)
	}
}

func TestAllocateTinyCIDR(t *testing.T) {
	s, _ := openStore(t)
	// A /30 has exactly one pod address.
	if a := mustAlloc(t, s, pfx("198.19.0.4/30"), "a/eth0"); a != ip("198.19.0.6") {
		t.Errorf("/30 gave %v, want 198.19.0.6", a)
	}
	for _, c := range []string{"198.19.0.4/31", "198.19.0.4/32"} {
		if _, err := alloc(t, s, pfx(c), "b/eth0"); err == nil || !strings.Contains(err.Error(), "no usable address") {
			t.Errorf("%s: err = %v, want no usable address", c, err)
		}
	}
}

// Parallel CNI calls each open the store (as separate plugin processes do)
// and allocate: the store's lock must keep every address distinct.
func TestAllocateConcurrent(t *testing.T) {
	dir := t.TempDir()
	cidr := pfx("198.19.3.0/24")
	const workers, each = 8, 5
	var (
		mu   sync.Mutex
		seen = map[netip.Addr]string{}
		wg   sync.WaitGroup
	)
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				owner := fmt.Sprintf("w%d-%d/eth0", w, i)
				s, err := store.Open(dir, 30*time.Second)
				if err != nil {
					errs <- err
					return
				}
				var a netip.Addr
				err = s.Update(func(tx *store.Tx) (err error) {
					a, err = ipam.Allocate(tx, cidr, owner)
					return err
				})
				s.Close()
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if prev, dup := seen[a]; dup {
					errs <- fmt.Errorf("%v given to %s and %s", a, prev, owner)
				}
				seen[a] = owner
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(seen) != workers*each {
		t.Errorf("%d distinct addresses, want %d", len(seen), workers*each)
	}
	for a := range seen {
		if ipam.Reserved(cidr, a) || !cidr.Contains(a) {
			t.Errorf("allocated %v, reserved or outside %s", a, cidr)
		}
	}
}
