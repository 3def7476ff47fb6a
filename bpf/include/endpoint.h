/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The endpoint map: the contract every plugin reads. One entry per pod
 * address on this node, written by the interface plugin (veth-ebpf) and
 * mirrored in Go by core/maps. Pinned at <bpfRoot>/endpoints.
 */
#pragma once

#include "braid.h"

#define ENDPOINTS_MAX 65536

struct endpoint_info {
	__u32 ifindex;          /* host-side veth, in the node's netns */
	__u32 id;               /* endpoint id from the node store */
	__u8  pod_mac[ETH_ALEN];  /* MAC of the pod's interface */
	__u8  host_mac[ETH_ALEN]; /* MAC of the host-side veth */
	__u32 flags;            /* reserved, zero */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32); /* pod IPv4, network byte order */
	__type(value, struct endpoint_info);
	__uint(max_entries, ENDPOINTS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} endpoints SEC(".maps");

__inline struct endpoint_info *endpoint_lookup(__u32 ip4)
{
	return bpf_map_lookup_elem(&endpoints, &ip4);
}
