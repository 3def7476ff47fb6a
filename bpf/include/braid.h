/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Shared definitions for every braid datapath object. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP   0x0800
#define ETH_P_ARP  0x0806
#define ETH_ALEN   6

#define TC_ACT_OK       0
#define TC_ACT_SHOT     2
#define TC_ACT_REDIRECT 7
/* TCX_NEXT (-1) is TC_ACT_UNSPEC for legacy cls_bpf: "not mine, next one". */
#define BRAID_NEXT      TCX_NEXT

#define __inline static __always_inline

/* mac_equal compares two Ethernet addresses. */
__inline bool mac_equal(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)b &&
	       *(const __u16 *)(a + 4) == *(const __u16 *)(b + 4);
}

__inline void mac_copy(__u8 *dst, const __u8 *src)
{
	__builtin_memcpy(dst, src, ETH_ALEN);
}
