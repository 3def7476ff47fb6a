// Package ipam hands out pod addresses from the node's pod CIDR, inside a
// store transaction so that parallel CNI calls never collide. The network,
// broadcast and gateway (first host) addresses are never handed out. An
// attachment (container id + ifname) always gets the address it already holds.
package ipam

import (
	"fmt"
	"net/netip"

	"github.com/braid-cni/braid/core/store"
	"github.com/containernetworking/cni/pkg/types"
)

// Reserved reports whether ip is the network, gateway or broadcast address of cidr.
func Reserved(cidr netip.Prefix, ip netip.Addr) bool {
	network := cidr.Masked().Addr()
	return ip == network || ip == network.Next() || ip == Broadcast(cidr)
}

// Broadcast is the last address of cidr.
func Broadcast(cidr netip.Prefix) netip.Addr {
	a := cidr.Masked().Addr().As4()
	host := uint32(1)<<(32-cidr.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Allocate returns owner's address, allocating the next free one after the
// cursor (wrapping around) if owner has none. The spec has no code for a
// full pool; it is reported as 11 (try again later), since a DEL frees one.
func Allocate(tx *store.Tx, cidr netip.Prefix, owner string) (netip.Addr, error) {
	allocs, err := tx.Allocations()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range allocs {
		if a.Owner == owner && cidr.Contains(a.IP) {
			return a.IP, nil
		}
	}
	if cidr.Bits() > 30 {
		return netip.Addr{}, fmt.Errorf("pod CIDR %s has no usable address", cidr)
	}
	start := tx.Cursor()
	if !cidr.Contains(start) {
		start = cidr.Masked().Addr()
	}
	size := 1 << (32 - cidr.Bits())
	ip := start
	for range size {
		ip = ip.Next()
		if !cidr.Contains(ip) {
			ip = cidr.Masked().Addr()
		}
		if Reserved(cidr, ip) || tx.AllocationOwner(ip) != "" {
			continue
		}
		return ip, tx.Allocate(ip, owner)
	}
	return netip.Addr{}, types.NewError(types.ErrTryAgainLater,
		fmt.Sprintf("pod CIDR %s is exhausted: all %d addresses are allocated; delete unused pods or run GC", cidr, size-3), "")
}
