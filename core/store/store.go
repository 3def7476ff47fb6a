// Package store is the node's state: one bbolt file under stateDir, opened
// per CNI call with a lock timeout so parallel calls serialize. It holds the
// node's identity, its endpoints and IP allocations (and, for the routing and
// load-balancing plugins, other nodes and services). It is the source of
// truth: every BPF map can be rebuilt from it.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the store's file inside stateDir.
const FileName = "braid.db"

// SchemaVersion is bumped whenever the layout of a bucket changes.
const SchemaVersion = 1

// Buckets. Values are JSON so that `braid` and humans can read them.
var (
	bucketMeta      = []byte("meta")
	bucketNode      = []byte("node")
	bucketEndpoints = []byte("endpoints")
	bucketIPAM      = []byte("ipam")
	allBuckets      = [][]byte{bucketMeta, bucketNode, bucketEndpoints, bucketIPAM}

	keySchema = []byte("schema")
	keyNextID = []byte("next-endpoint-id")
	keyNode   = []byte("identity")
)

// ErrNotFound is returned for a key that is absent.
var ErrNotFound = errors.New("not found")

// Store is an open node state store. Close it as soon as the call is done:
// it holds the node-wide lock while open.
type Store struct {
	db *bolt.DB
}

// Options tune how the store is opened.
type Options struct {
	// Timeout is how long to wait for another process to release the store.
	Timeout time.Duration
	// NoSync skips fsync on commit. CNI calls use it: per-pod state does not
	// outlive a reboot (the runtime adds every pod again), fsync would be
	// most of an ADD's time, and a store torn by a power loss is recovered
	// by `braid node rebuild`. Process death loses nothing either way.
	NoSync bool
}

// Open opens (creating if needed) the store in dir, waiting up to timeout
// for another process to release it. A timeout is a CNI "try again later".
func Open(dir string, timeout time.Duration) (*Store, error) {
	return OpenWith(dir, Options{Timeout: timeout})
}

// OpenWith is Open with options.
func OpenWith(dir string, o Options) (*Store, error) {
	timeout := o.Timeout
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, &IOError{Op: "cannot create stateDir", Path: dir, Err: err}
	}
	path := filepath.Join(dir, FileName)
	if err := checkNotEmpty(path); err != nil {
		return nil, err
	}
	// A panic in bolt.Open (a corrupt file) leaves bbolt's mapping of the
	// file, and with it bbolt's lock, in this process: harmless for a CNI
	// call, which exits; a long-lived caller keeps the corrupt file locked
	// until `braid node rebuild` moves it aside.
	var db *bolt.DB
	err := guarded(path, func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, NoSync: o.NoSync})
		return err
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, &LockedError{Path: path, Timeout: timeout}
	}
	var corruptErr *CorruptError
	if errors.As(err, &corruptErr) {
		return nil, err
	}
	if err != nil {
		return nil, &IOError{Op: "cannot open state store", Path: path, Err: fmt.Errorf("%w (if it is corrupt, %s)", err, rebuildHint)}
	}
	restrictMode(path)
	s := &Store{db: db}
	if err := guarded(path, s.ensureSchema); err != nil {
		db.Close()
		if errors.As(err, &corruptErr) {
			return nil, err
		}
		return nil, &IOError{Op: "state store", Path: path, Err: err}
	}
	return s, nil
}

// ensureSchema creates the buckets and records the schema version, in a
// write transaction only when something is missing: on every call after the
// first, opening the store costs no commit.
func (s *Store) ensureSchema() error {
	current := false
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if tx.Bucket(b) == nil {
				return nil
			}
		}
		v := tx.Bucket(bucketMeta).Get(keySchema)
		if v == nil {
			return nil
		}
		if got := binary.BigEndian.Uint32(v); got > SchemaVersion {
			return fmt.Errorf("schema version %d is newer than this binary's %d: upgrade braid", got, SchemaVersion)
		}
		current = binary.BigEndian.Uint32(v) == SchemaVersion
		return nil
	})
	if err != nil {
		return err
	}
	if current {
		if _, err := os.Stat(markerPath(s.db.Path())); err == nil {
			return nil
		}
		return markInitialized(s.db.Path()) // a store older than the marker
	}
	if err := s.db.Update(initSchema); err != nil {
		return err
	}
	return markInitialized(s.db.Path())
}

func initSchema(tx *bolt.Tx) error {
	for _, b := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(keySchema); v != nil {
		if got := binary.BigEndian.Uint32(v); got > SchemaVersion {
			return fmt.Errorf("schema version %d is newer than this binary's %d: upgrade braid", got, SchemaVersion)
		}
	}
	return meta.Put(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion))
}

// Close releases the store and its lock.
func (s *Store) Close() error { return s.db.Close() }

// Path is the store's file.
func (s *Store) Path() string { return s.db.Path() }

// Update runs fn in a read-write transaction, committed if fn returns nil.
func (s *Store) Update(fn func(*Tx) error) error {
	return guarded(s.db.Path(), func() error {
		return s.db.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx}) })
	})
}

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(*Tx) error) error {
	return guarded(s.db.Path(), func() error {
		return s.db.View(func(tx *bolt.Tx) error { return fn(&Tx{tx}) })
	})
}

// Tx is a store transaction.
type Tx struct{ tx *bolt.Tx }

func (t *Tx) getJSON(bucket, key []byte, v any) error {
	raw := t.tx.Bucket(bucket).Get(key)
	if raw == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return corrupt(t.tx.DB().Path(), "record %s/%s: %v", bucket, key, err)
	}
	return nil
}

func (t *Tx) putJSON(bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return t.tx.Bucket(bucket).Put(key, raw)
}

// forEachJSON decodes every value of bucket into a fresh T.
func forEachJSON[T any](t *Tx, bucket []byte, fn func(T) error) error {
	return t.tx.Bucket(bucket).ForEach(func(key, raw []byte) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return corrupt(t.tx.DB().Path(), "record %s/%s: %v", bucket, key, err)
		}
		return fn(v)
	})
}
