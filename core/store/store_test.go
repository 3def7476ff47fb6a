package store

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	bolt "go.etcd.io/bbolt"
)

// openTemp opens a store in a fresh directory and closes it when t ends.
func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state") // Open must create it
	s, err := Open(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

// cniCode is the CNI code the plugin layer (core/plugin) gives one of the
// store's typed errors: 5 for a corrupt or unreadable store, 11 for a
// locked one. Any other error fails t.
func cniCode(t *testing.T, err error) (uint, string) {
	t.Helper()
	var corrupt *CorruptError
	var ioErr *IOError
	var locked *LockedError
	switch {
	case errors.As(err, &corrupt), errors.As(err, &ioErr):
		return types.ErrIOFailure, err.Error()
	case errors.As(err, &locked):
		return types.ErrTryAgainLater, err.Error()
	}
	t.Fatalf("error %v (%T) is none of the store's typed errors", err, err)
	return 0, ""
}

func TestOpenCreatesStoreWithSchema(t *testing.T) {
	s, dir := openTemp(t)
	if want := filepath.Join(dir, FileName); s.Path() != want {
		t.Errorf("Path() = %s, want %s", s.Path(), want)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("stateDir mode: %v %v", fi.Mode(), err)
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if tx.Bucket(b) == nil {
				t.Errorf("bucket %s missing", b)
			}
		}
		v := tx.Bucket(bucketMeta).Get(keySchema)
		if len(v) != 4 || binary.BigEndian.Uint32(v) != SchemaVersion {
			t.Errorf("schema = %x, want %d", v, SchemaVersion)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopening an existing store of the current schema works.
	s2, err := Open(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	s, dir := openTemp(t)
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion+1))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(dir, time.Second)
	if err == nil {
		t.Fatal("Open accepted a store with a newer schema")
	}
	code, msg := cniCode(t, err)
	if code != types.ErrIOFailure || !strings.Contains(msg, "newer") {
		t.Errorf("got code %d %q, want %d naming a newer schema", code, msg, types.ErrIOFailure)
	}
	// The refused store must be left as it was, not downgraded.
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		if v := binary.BigEndian.Uint32(tx.Bucket(bucketMeta).Get(keySchema)); v != SchemaVersion+1 {
			t.Errorf("schema rewritten to %d", v)
		}
		return nil
	})
}

func TestOpenCorruptFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(strings.Repeat("not a bolt file ", 512)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, time.Second)
	if err == nil {
		t.Fatal("Open accepted a corrupt file")
	}
	if code, msg := cniCode(t, err); code != types.ErrIOFailure {
		t.Errorf("code = %d (%s), want %d", code, msg, types.ErrIOFailure)
	}
}

// bbolt locks the file with flock(2). flock locks belong to the open file
// description, so a second open(2) of the file conflicts even inside one
// process: the holder can live in the test process itself.
func TestOpenWhileLocked(t *testing.T) {
	s, dir := openTemp(t)

	start := time.Now()
	_, err := Open(dir, 100*time.Millisecond)
	if err == nil {
		t.Fatal("a second Open succeeded while the store was open")
	}
	code, msg := cniCode(t, err)
	if code != types.ErrTryAgainLater {
		t.Errorf("code = %d (%s), want %d", code, msg, types.ErrTryAgainLater)
	}
	if !strings.Contains(msg, "locked") {
		t.Errorf("message %q does not say the store is locked", msg)
	}
	// bbolt stops retrying one 50ms retry interval before the timeout.
	if d := time.Since(start); d < 50*time.Millisecond || d > 5*time.Second {
		t.Errorf("gave up after %v, want about the 100ms timeout", d)
	}

	// A waiter gets the store as soon as the holder closes it.
	time.AfterFunc(100*time.Millisecond, func() { s.Close() })
	s2, err := Open(dir, 5*time.Second)
	if err != nil {
		t.Fatalf("Open after release: %v", err)
	}
	s2.Close()
}

func TestNodeIdentity(t *testing.T) {
	s, _ := openTemp(t)
	err := s.View(func(tx *Tx) error {
		_, err := tx.Node()
		return err
	})
	if !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("Node() on a new store: %v, want ErrNotInitialized", err)
	}
	want := Node{
		Name:    "node-1",
		NodeIP:  netip.MustParseAddr("198.18.0.11"),
		PodCIDR: netip.MustParsePrefix("198.19.1.0/24"),
		Device:  "eth0",
	}
	if err := s.Update(func(tx *Tx) error { return tx.SetNode(want) }); err != nil {
		t.Fatal(err)
	}
	var got Node
	if err := s.View(func(tx *Tx) (err error) { got, err = tx.Node(); return }); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("Node() = %+v, want %+v", got, want)
	}
}

func TestUpdateRollsBackOnError(t *testing.T) {
	s, _ := openTemp(t)
	boom := errors.New("boom")
	err := s.Update(func(tx *Tx) error {
		if err := tx.PutEndpoint(&Endpoint{ContainerID: "c", IfName: "eth0"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	s.View(func(tx *Tx) error {
		if eps, _ := tx.Endpoints(); len(eps) != 0 {
			t.Errorf("rolled-back endpoint persisted: %+v", eps)
		}
		return nil
	})
	// The rolled-back id is not consumed either.
	ep := &Endpoint{ContainerID: "c", IfName: "eth0"}
	s.Update(func(tx *Tx) error { return tx.PutEndpoint(ep) })
	if ep.ID != 1 {
		t.Errorf("id after rollback = %d, want 1", ep.ID)
	}
}

func TestEndpoints(t *testing.T) {
	s, dir := openTemp(t)
	put := func(s *Store, e *Endpoint) {
		t.Helper()
		if err := s.Update(func(tx *Tx) error { return tx.PutEndpoint(e) }); err != nil {
			t.Fatal(err)
		}
	}
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	a := &Endpoint{ContainerID: "aaa", IfName: "eth0", Netns: "/var/run/netns/a",
		IPv4: netip.MustParseAddr("198.19.0.2"), HostIfName: "brd1", HostIfIndex: 7,
		HostMAC: "02:00:00:00:00:01", PodMAC: "02:00:00:00:00:02", MTU: 1450, Created: created}
	b := &Endpoint{ContainerID: "bbb", IfName: "eth0", IPv4: netip.MustParseAddr("198.19.0.3"), IPAMPlugin: "host-local"}
	put(s, b)
	put(s, a)
	if b.ID != 1 || a.ID != 2 {
		t.Fatalf("ids = %d, %d, want 1, 2", b.ID, a.ID)
	}

	var got Endpoint
	if err := s.View(func(tx *Tx) (err error) { got, err = tx.Endpoint(EndpointKey("aaa", "eth0")); return }); err != nil {
		t.Fatal(err)
	}
	if got != *a {
		t.Errorf("Endpoint() = %+v, want %+v", got, *a)
	}
	if a.Key() != "aaa/eth0" {
		t.Errorf("Key() = %q", a.Key())
	}
	err := s.View(func(tx *Tx) error { _, err := tx.Endpoint("nope/eth0"); return err })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("absent endpoint: %v, want ErrNotFound", err)
	}

	// Re-putting an endpoint keeps its id.
	a.MTU = 1500
	put(s, a)
	if a.ID != 2 {
		t.Errorf("id changed on update to %d", a.ID)
	}

	var list []Endpoint
	s.View(func(tx *Tx) (err error) { list, err = tx.Endpoints(); return })
	if len(list) != 2 || list[0].ContainerID != "aaa" || list[1].ContainerID != "bbb" || list[0].MTU != 1500 {
		t.Errorf("Endpoints() = %+v, want aaa then bbb", list)
	}

	// Delete, including an absent key; ids are never reused, even after a reopen.
	if err := s.Update(func(tx *Tx) error {
		if err := tx.DeleteEndpoint(a.Key()); err != nil {
			return err
		}
		return tx.DeleteEndpoint("absent/eth0")
	}); err != nil {
		t.Fatal(err)
	}
	c := &Endpoint{ContainerID: "ccc", IfName: "eth0"}
	put(s, c)
	if c.ID != 3 {
		t.Errorf("id after delete = %d, want 3", c.ID)
	}
	s.Close()
	s2, err := Open(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	d := &Endpoint{ContainerID: "ddd", IfName: "eth0"}
	put(s2, d)
	if d.ID != 4 {
		t.Errorf("id after reopen = %d, want 4", d.ID)
	}
	s2.View(func(tx *Tx) (err error) { list, err = tx.Endpoints(); return })
	if len(list) != 3 {
		t.Errorf("Endpoints() after delete = %+v, want bbb, ccc, ddd", list)
	}
}

func TestAllocations(t *testing.T) {
	s, _ := openTemp(t)
	ip1, ip2 := netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("198.19.0.3")
	err := s.Update(func(tx *Tx) error {
		if tx.Cursor().IsValid() {
			t.Errorf("cursor on a new store = %v", tx.Cursor())
		}
		if err := tx.Allocate(ip1, "a/eth0"); err != nil {
			return err
		}
		if err := tx.Allocate(ip2, "b/eth0"); err != nil {
			return err
		}
		if tx.Cursor() != ip2 {
			t.Errorf("cursor = %v, want %v", tx.Cursor(), ip2)
		}
		if o := tx.AllocationOwner(ip1); o != "a/eth0" {
			t.Errorf("owner of %v = %q", ip1, o)
		}
		if err := tx.Release(ip2); err != nil {
			return err
		}
		if err := tx.Release(netip.MustParseAddr("198.19.0.99")); err != nil {
			return err
		}
		if o := tx.AllocationOwner(ip2); o != "" {
			t.Errorf("released %v still owned by %q", ip2, o)
		}
		if tx.Cursor() != ip2 {
			t.Errorf("release moved the cursor to %v", tx.Cursor())
		}
		allocs, err := tx.Allocations()
		if err != nil {
			return err
		}
		if len(allocs) != 1 || allocs[0] != (Allocation{IP: ip1, Owner: "a/eth0"}) {
			t.Errorf("Allocations() = %+v (the cursor must not be listed)", allocs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
