/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * vxlan-tunnel's counter reasons: the index of each counter in its counters map
 * (counters.h). The one definition: bpf2go -type generates the Go side
 * (plugins/counters), and a counter's name (metric label, braid status) is
 * its value's name without CNT_, in lower case. Append new reasons at the
 * end (keep the values dense from 0, below COUNTERS_MAX) and run
 * go generate ./plugins/vxlan-tunnel.
 */
#pragma once

enum counter {
	CNT_ENCAP              = 0,  /* from_container: tunnel key set, redirected to the VXLAN device */
	CNT_PASS_NEXT          = 1,  /* from_container: not for a remote pod CIDR (or not IPv4): TCX_NEXT */
	CNT_DECAP_DELIVER      = 2,  /* from_overlay: for a local pod, delivered with bpf_redirect_peer */
	CNT_DECAP_TO_STACK     = 3,  /* from_overlay: not for a local pod (the node itself): to the stack */
	CNT_DROP_NO_KEY        = 4,  /* to_overlay: no tunnel for the destination; from_overlay: no tunnel key */
	CNT_DROP_UNKNOWN_PEER  = 5,  /* from_overlay: outer source is not a known node */
	CNT_DROP_WRONG_VNI     = 6,  /* from_overlay: VNI is not the cluster's */
	CNT_DROP_SPOOFED_INNER = 7,  /* from_overlay: inner source outside the sender's pod CIDR */
	CNT_DROP_MALFORMED     = 8,  /* from_overlay: inner packet is not IPv4 */
	CNT_DROP_SET_KEY       = 9,  /* bpf_skb_set_tunnel_key failed */
	CNT_NOT_CONFIGURED     = 10, /* to_overlay/from_overlay ran before the settings were written */
	CNT_FRAG_NEEDED        = 11, /* from_container: larger than the overlay's MTU: to the stack (ICMP or fragments) */
	CNT_DROP_VLAN          = 12, /* from_container, from_overlay: a VLAN tag, in skb metadata or in the frame */
	CNT_TTL_EXPIRED        = 13, /* from_container: TTL would reach 0: to the stack (ICMP time exceeded) */
	CNT_DROP_REWRITE       = 14, /* a TTL or MAC rewrite failed (encap, or delivery to a local pod) */
};
