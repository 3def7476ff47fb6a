package main

import "github.com/braid-cni/braid/plugins/counters"

// The tests' names for the counter indexes (plugins/counters).
const (
	cntEncap            = int(counters.VxlanTunnelCounterCNT_ENCAP)
	cntPassNext         = int(counters.VxlanTunnelCounterCNT_PASS_NEXT)
	cntDecapDeliver     = int(counters.VxlanTunnelCounterCNT_DECAP_DELIVER)
	cntDecapToStack     = int(counters.VxlanTunnelCounterCNT_DECAP_TO_STACK)
	cntDropNoKey        = int(counters.VxlanTunnelCounterCNT_DROP_NO_KEY)
	cntDropUnknownPeer  = int(counters.VxlanTunnelCounterCNT_DROP_UNKNOWN_PEER)
	cntDropWrongVNI     = int(counters.VxlanTunnelCounterCNT_DROP_WRONG_VNI)
	cntDropSpoofedInner = int(counters.VxlanTunnelCounterCNT_DROP_SPOOFED_INNER)
	cntDropMalformed    = int(counters.VxlanTunnelCounterCNT_DROP_MALFORMED)
	cntDropSetKey       = int(counters.VxlanTunnelCounterCNT_DROP_SET_KEY)
	cntNotConfigured    = int(counters.VxlanTunnelCounterCNT_NOT_CONFIGURED)
	cntFragNeeded       = int(counters.VxlanTunnelCounterCNT_FRAG_NEEDED)
	cntDropVLAN         = int(counters.VxlanTunnelCounterCNT_DROP_VLAN)
	cntTTLExpired       = int(counters.VxlanTunnelCounterCNT_TTL_EXPIRED)
)
