/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * native-route's counter reasons: the index of each counter in its counters map
 * (counters.h). The one definition: bpf2go -type generates the Go side
 * (plugins/counters), and a counter's name (metric label, braid status) is
 * its value's name without CNT_, in lower case. Append new reasons at the
 * end (keep the values dense from 0, below COUNTERS_MAX) and run
 * go generate ./plugins/native-route.
 */
#pragma once

enum counter {
	CNT_FIB_REDIRECT          = 0, /* from_container: fib_lookup answered, bpf_redirect to the node device */
	CNT_FIB_REDIRECT_NEIGH    = 1, /* from_container: next hop not resolved yet: bpf_redirect_neigh */
	CNT_PASS_NEXT             = 2, /* from_container: not IPv4, TTL <= 1 or not configured: TCX_NEXT */
	CNT_FIB_TO_STACK          = 3, /* from_container: the lookup cannot answer (local, frag needed, no route, other device) */
	CNT_NETDEV_DELIVER        = 4, /* from_netdev: for a local pod, delivered with bpf_redirect_peer */
	CNT_NETDEV_PASS           = 5, /* from_netdev: not for a local pod: TCX_NEXT */
	CNT_DROP_REWRITE          = 6, /* a TTL or MAC rewrite failed (forwarding, or delivery to a local pod) */
	CNT_DROP_NETDEV_MALFORMED = 7, /* from_netdev: EtherType IPv4, but the header lies about its lengths (or is cut short) */
	CNT_NOT_PEER              = 8, /* from_container: not for another node's pod CIDR (internet, VIPs, multicast): to the stack */
	CNT_DROP_VLAN             = 9, /* from_container: a VLAN tag, in skb metadata or in the frame */
};
