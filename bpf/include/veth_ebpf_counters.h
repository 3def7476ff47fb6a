/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * veth-ebpf's counter reasons: the index of each counter in its counters map
 * (counters.h). The one definition: bpf2go -type generates the Go side
 * (plugins/counters), and a counter's name (metric label, braid status) is
 * its value's name without CNT_, in lower case. Append new reasons at the
 * end (keep the values dense from 0, below COUNTERS_MAX) and run
 * go generate ./plugins/veth-ebpf.
 */
#pragma once

enum counter {
	CNT_REDIRECT_PEER  = 0, /* from_container: a local pod's packet delivered with bpf_redirect_peer */
	CNT_PASS_NEXT      = 1, /* from_container: valid, not for a local pod (or ARP): TCX_NEXT */
	CNT_DROP_SPOOF_IP  = 2, /* from_container: IPv4 source is not the endpoint's */
	CNT_DROP_SPOOF_MAC = 3, /* from_container: source MAC is not the endpoint's */
	CNT_DROP_SPOOF_ARP = 4, /* from_container: ARP sender is not the endpoint's */
	CNT_DROP_PROTO     = 5, /* from_container: not IPv4 or ARP (IPv6); to_container: neither IPv4 nor ARP */
	CNT_DROP_MALFORMED = 6, /* an IPv4 header whose lengths do not add up, or cut short */
	CNT_DROP_NOT_OURS  = 7, /* to_container: IPv4 not addressed to the pod */
	CNT_TO_CONTAINER   = 8, /* to_container: passed to the pod */
	CNT_DROP_VLAN      = 9, /* a VLAN tag, in skb metadata or in the frame (both directions) */
};
