package main

// Counter indexes: the CNT_ enum of bpf/native_route.c, in order
// (TestCountersMatchSource keeps the two in step).
const (
	cntFIBRedirect         = iota // from_container: fib_lookup answered, bpf_redirect to the node device
	cntFIBRedirectNeigh           // from_container: next hop not resolved yet: bpf_redirect_neigh
	cntPassNext                   // from_container: not IPv4, TTL <= 1 or not configured: TCX_NEXT
	cntFIBToStack                 // from_container: the lookup cannot answer (local, frag needed, no route, other device)
	cntNetdevDeliver              // from_netdev: for a local pod, delivered with bpf_redirect_peer
	cntNetdevPass                 // from_netdev: not for a local pod: TCX_NEXT
	cntDropRewrite                // a TTL or MAC rewrite failed
	cntDropNetdevMalformed        // from_netdev: EtherType IPv4, but the header lies about its lengths (or is cut short)
)

// counterNames names the indexes of the counters map, in the order of the
// enum in bpf/native_route.c ("drop" marks drops, for braid agent's metrics).
var counterNames = []string{
	cntFIBRedirect:         "fib_redirect",
	cntFIBRedirectNeigh:    "fib_redirect_neigh",
	cntPassNext:            "pass_next",
	cntFIBToStack:          "fib_to_stack",
	cntNetdevDeliver:       "netdev_deliver",
	cntNetdevPass:          "netdev_pass",
	cntDropRewrite:         "drop_rewrite",
	cntDropNetdevMalformed: "drop_netdev_malformed",
}
