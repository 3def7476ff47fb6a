package main

import "github.com/braid-cni/braid/plugins/counters"

// The tests' names for the counter indexes (plugins/counters).
const (
	// cntConnectLB counts connect() calls rewritten to a backend.
	cntConnectLB = int(counters.SockLBCounterCNT_CONNECT_LB)
	// cntSendmsgLB counts unconnected UDP datagrams rewritten to a backend.
	cntSendmsgLB = int(counters.SockLBCounterCNT_SENDMSG_LB)
	// cntRefusedEmpty counts connects and sends to a service without
	// backends, failed with ECONNREFUSED.
	cntRefusedEmpty = int(counters.SockLBCounterCNT_REFUSED_EMPTY)
	// cntRevNAT counts recvmsg/getpeername calls shown the VIP.
	cntRevNAT = int(counters.SockLBCounterCNT_REVNAT)
	// cntSkippedNetns counts connects and sends to a service left alone by
	// hostNamespaceOnly (another netns's).
	cntSkippedNetns = int(counters.SockLBCounterCNT_SKIPPED_NETNS)
	// cntBackendMissing counts picks of a slot absent from the backend map
	// (the maps disagree; failed with ECONNREFUSED).
	cntBackendMissing = int(counters.SockLBCounterCNT_BACKEND_MISSING)
)

const (
	// cntNodePortLB counts, of those balanced, connects and sends to
	// <a node IP>:<nodePort>.
	cntNodePortLB = int(counters.SockLBCounterCNT_NODEPORT_LB)
	// cntMappedLB counts, of those balanced, IPv6 sockets' connects and
	// sends to a v4-mapped address.
	cntMappedLB = int(counters.SockLBCounterCNT_MAPPED_LB)
	// cntAffinityHit counts picks that kept the client's backend.
	cntAffinityHit = int(counters.SockLBCounterCNT_AFFINITY_HIT)
	// cntAffinityStale counts affinity entries whose backend left its
	// slot: the client was given a new one.
	cntAffinityStale = int(counters.SockLBCounterCNT_AFFINITY_STALE)
)
