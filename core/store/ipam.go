package store

import (
	"net/netip"
)

// The ipam bucket maps an allocated address (text) to its owner's key; the
// cursor remembers the last address handed out so that a released address
// is not reused at once (a late packet must not reach the next pod).
var keyCursor = []byte("cursor")

// Allocation is an address and the attachment holding it.
type Allocation struct {
	IP    netip.Addr `json:"ip"`
	Owner string     `json:"owner"`
}

// AllocationOwner returns who holds ip, or "".
func (t *Tx) AllocationOwner(ip netip.Addr) string {
	return string(t.tx.Bucket(bucketIPAM).Get([]byte(ip.String())))
}

// Allocate records ip as held by owner.
func (t *Tx) Allocate(ip netip.Addr, owner string) error {
	b := t.tx.Bucket(bucketIPAM)
	if err := b.Put([]byte(ip.String()), []byte(owner)); err != nil {
		return err
	}
	return b.Put(keyCursor, []byte(ip.String()))
}

// Release frees ip; absent is fine.
func (t *Tx) Release(ip netip.Addr) error {
	return t.tx.Bucket(bucketIPAM).Delete([]byte(ip.String()))
}

// Cursor is the last address allocated (invalid when none was).
func (t *Tx) Cursor() netip.Addr {
	a, _ := netip.ParseAddr(string(t.tx.Bucket(bucketIPAM).Get(keyCursor)))
	return a
}

// Allocations lists every allocated address.
func (t *Tx) Allocations() ([]Allocation, error) {
	var out []Allocation
	err := t.tx.Bucket(bucketIPAM).ForEach(func(k, v []byte) error {
		ip, err := netip.ParseAddr(string(k))
		if err != nil { // the cursor
			return nil
		}
		out = append(out, Allocation{IP: ip, Owner: string(v)})
		return nil
	})
	return out, err
}
