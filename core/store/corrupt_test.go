package store

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// A store file damaged on disk (truncated, overwritten) must give a CNI
// I/O error that names the way out, never a crash: bbolt panics on pages it
// cannot make sense of, and a zero-length file would pass for a new store.
func TestDamagedStore(t *testing.T) {
	const pageSize = 4096
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte
		// survives: bbolt keeps two meta pages and falls back to the good
		// one; mayRead: the pages hit may be free ones.
		survives, mayRead bool
	}{
		{"truncated to zero", func([]byte) []byte { return nil }, false, false},
		{"truncated to one page", func(b []byte) []byte { return b[:pageSize] }, false, false},
		{"truncated to two pages", func(b []byte) []byte { return b[:2*pageSize] }, false, false},
		{"truncated to half", func(b []byte) []byte { return b[:len(b)/2] }, false, false},
		{"middle zeroed", func(b []byte) []byte {
			clear(b[len(b)/4 : len(b)*3/4])
			return b
		}, false, false},
		{"data pages overwritten", func(b []byte) []byte {
			for i := 3 * pageSize; i < 5*pageSize && i < len(b); i++ {
				b[i] = 0xff
			}
			return b
		}, false, true},
		{"both meta pages overwritten", func(b []byte) []byte {
			for i := range 200 {
				b[i], b[pageSize+i] = byte(i*13), byte(i*7)
			}
			return b
		}, false, false},
		{"one meta page overwritten", func(b []byte) []byte {
			for i := range 100 {
				b[i] = byte(i * 7)
			}
			return b
		}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fill(t, dir, 200)
			path := filepath.Join(dir, FileName)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.damage(b), 0o600); err != nil {
				t.Fatal(err)
			}
			n, err := countEndpoints(dir)
			if tc.survives || (tc.mayRead && err == nil) {
				if err != nil || n != 200 {
					t.Fatalf("%d endpoints, err %v; want all 200 from the other meta page", n, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("the damaged store was read (%d endpoints)", n)
			}
			code, msg := cniCode(t, err)
			if code != types.ErrIOFailure || !strings.Contains(msg, "braid node rebuild") {
				t.Errorf("error %d %q; want %d naming `braid node rebuild`", code, msg, types.ErrIOFailure)
			}
		})
	}
}

// A record that is not JSON any more is named, with the way out.
func TestCorruptRecord(t *testing.T) {
	s, _ := openTemp(t)
	err := s.Update(func(tx *Tx) error {
		return tx.tx.Bucket(bucketEndpoints).Put([]byte("c/eth0"), []byte("{not json"))
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx *Tx) error { _, err := tx.Endpoints(); return err })
	if code, msg := cniCode(t, err); code != types.ErrIOFailure || !strings.Contains(msg, "endpoints/c/eth0") ||
		!strings.Contains(msg, "braid node rebuild") {
		t.Errorf("error %d %q", code, msg)
	}
}

func fill(t testing.TB, dir string, n int) {
	t.Helper()
	s, err := Open(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Update(func(tx *Tx) error {
		for i := range n {
			e := Endpoint{ContainerID: fmt.Sprintf("%064d", i), IfName: "eth0",
				IPv4: netip.AddrFrom4([4]byte{198, 19, byte(1 + i/250), byte(2 + i%250)})}
			if err := tx.PutEndpoint(&e); err != nil {
				return err
			}
			if err := tx.Allocate(e.IPv4, e.Key()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func countEndpoints(dir string) (int, error) {
	s, err := Open(dir, time.Second)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	var n int
	err = s.View(func(tx *Tx) error {
		eps, err := tx.Endpoints()
		n = len(eps)
		return err
	})
	return n, err
}

// Every page-aligned truncation of a store either still reads whole (the
// pages cut were free) or fails with the I/O error; none crashes. Reads
// past the end of a truncated file fault in bbolt's mmap.
func TestEveryTruncation(t *testing.T) {
	src := t.TempDir()
	fill(t, src, 600)
	orig, err := os.ReadFile(filepath.Join(src, FileName))
	if err != nil {
		t.Fatal(err)
	}
	whole, failed := 0, 0
	for n := 0; n < len(orig); n += 4096 {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), orig[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		if err := markInitialized(filepath.Join(dir, FileName)); err != nil {
			t.Fatal(err)
		}
		switch c, err := countEndpoints(dir); {
		case err == nil && c == 600:
			whole++
		case err == nil:
			t.Errorf("cut to %d bytes: %d endpoints read, no error", n, c)
		default:
			if code, msg := cniCode(t, err); code != types.ErrIOFailure || !strings.Contains(msg, "braid node rebuild") {
				t.Errorf("cut to %d bytes: error %d %q", n, code, msg)
			}
			failed++
		}
	}
	t.Logf("%d truncations: %d read whole, %d refused with the I/O error", whole+failed, whole, failed)
}

// FuzzDamagedStore overwrites a run of bytes of a small store anywhere:
// reading it must end in either the data or an error, never a crash.
func FuzzDamagedStore(f *testing.F) {
	src := f.TempDir()
	fill(f, src, 40)
	orig, err := os.ReadFile(filepath.Join(src, FileName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint32(0), []byte{0xff, 0xff, 0xff, 0xff})
	f.Add(uint32(4096+16), []byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint32(2*4096), []byte("garbage"))
	f.Add(uint32(3*4096+10), []byte{0x7f, 0x7f})
	f.Fuzz(func(t *testing.T, at uint32, data []byte) {
		b := bytes.Clone(orig)
		copy(b[int(at)%len(b):], data)
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := countEndpoints(dir); err != nil {
			if code, _ := cniCode(t, err); code != types.ErrIOFailure {
				t.Errorf("error code %d: %v", code, err)
			}
		}
	})
}

// An empty file with no marker is a store another process is creating at
// this moment (bbolt creates the file before taking its lock): it must open
// as a new store, not be called corrupt.
func TestEmptyFileBeingCreatedIsNotCorrupt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, time.Second)
	if err != nil {
		t.Fatalf("open while another process creates the store: %v", err)
	}
	s.Close()
	if _, err := os.Stat(markerPath(filepath.Join(dir, FileName))); err != nil {
		t.Fatalf("no marker after the first open: %v", err)
	}
}
