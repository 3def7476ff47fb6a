package main

import "github.com/braid-cni/braid/plugins/counters"

// The tests' names for the counter indexes (plugins/counters).
const (
	cntFIBRedirect         = int(counters.NativeRouteCounterCNT_FIB_REDIRECT)
	cntFIBRedirectNeigh    = int(counters.NativeRouteCounterCNT_FIB_REDIRECT_NEIGH)
	cntPassNext            = int(counters.NativeRouteCounterCNT_PASS_NEXT)
	cntFIBToStack          = int(counters.NativeRouteCounterCNT_FIB_TO_STACK)
	cntNetdevDeliver       = int(counters.NativeRouteCounterCNT_NETDEV_DELIVER)
	cntNetdevPass          = int(counters.NativeRouteCounterCNT_NETDEV_PASS)
	cntDropRewrite         = int(counters.NativeRouteCounterCNT_DROP_REWRITE)
	cntDropNetdevMalformed = int(counters.NativeRouteCounterCNT_DROP_NETDEV_MALFORMED)
	cntNotPeer             = int(counters.NativeRouteCounterCNT_NOT_PEER)
	cntDropVLAN            = int(counters.NativeRouteCounterCNT_DROP_VLAN)
)
