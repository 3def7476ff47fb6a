package main

// counterNames names the indexes of dsr's counters map, in the order of the
// CNT_ enum in bpf/dsr.c (TestCounterNamesMatchSource keeps them in step).
// `braid status` and the agent's Status show them under these names.
var counterNames = []string{
	"local_deliver",   // 0: node port, backend on this node: DNAT and delivered to the pod
	"dsr_forward",     // 1: node port, backend on another node: DNAT and forwarded for DSR
	"dsr_opt_added",   // 2: ...and the 0x9a option inserted (TCP SYN, every UDP datagram)
	"snat_forward",    // 3: node port forwarded with SNAT (mode snat, or a fallback)
	"snat_fallback",   // 4: DSR impossible (options present, or the option would outgrow the MTU): SNAT instead
	"opt_accepted",    // 5: a trusted node's option accepted: flow recorded, packet delivered
	"reply_rewrite",   // 6: a backend pod's reply given the service address as its source
	"snat_reply",      // 7: a reply to an SNATed flow turned back towards the client
	"drop_no_backend", // 8: node port with no (local, under Local policy) backend
	"drop_forged_opt", // 9: option from a pod, or naming an unknown node or a non-local destination
	"drop_nat",        // 10: a rewrite (NAT, option insertion) failed
	"drop_snat_ports", // 11: no free SNAT port for the flow
	"pass",            // 12: from_netdev: not dsr's, passed on
}
