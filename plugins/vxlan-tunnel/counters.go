package main

// Counter indexes: the CNT_ enum of bpf/vxlan_tunnel.c, in order
// (TestCountersMatchSource keeps the two in step).
const (
	cntEncap            = iota // from_container: tunnel key set, redirected to the VXLAN device
	cntPassNext                // from_container: not for a remote pod CIDR (or not IPv4): TCX_NEXT
	cntDecapDeliver            // from_overlay: for a local pod, delivered with bpf_redirect_peer
	cntDecapToStack            // from_overlay: not for a local pod (the node itself): to the stack
	cntDropNoKey               // to_overlay: no tunnel for the destination; from_overlay: no tunnel key
	cntDropUnknownPeer         // from_overlay: outer source is not a known node
	cntDropWrongVNI            // from_overlay: VNI is not the cluster's
	cntDropSpoofedInner        // from_overlay: inner source outside the sender's pod CIDR
	cntDropMalformed           // from_overlay: inner packet is not IPv4
	cntDropSetKey              // bpf_skb_set_tunnel_key failed
	cntNotConfigured           // to_overlay/from_overlay ran before the settings were written
	cntFragNeeded              // from_container: larger than the overlay's MTU: to the stack (ICMP or fragments)
)

// counterNames names the indexes of the counters map, in the order of the
// enum in bpf/vxlan_tunnel.c ("drop" marks drops, for braid agent's metrics).
var counterNames = []string{
	cntEncap:            "encap",
	cntPassNext:         "pass_next",
	cntDecapDeliver:     "decap_deliver",
	cntDecapToStack:     "decap_to_stack",
	cntDropNoKey:        "drop_no_key",
	cntDropUnknownPeer:  "drop_unknown_peer",
	cntDropWrongVNI:     "drop_wrong_vni",
	cntDropSpoofedInner: "drop_spoofed_inner",
	cntDropMalformed:    "drop_malformed",
	cntDropSetKey:       "drop_set_key",
	cntNotConfigured:    "not_configured",
	cntFragNeeded:       "frag_needed",
}
