/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Bounds-checked header access for tc programs. */
#pragma once

#include "braid.h"

struct arp_eth_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8   hlen;
	__u8   plen;
	__be16 oper;
	__u8   sha[ETH_ALEN];
	__be32 spa;
	__u8   tha[ETH_ALEN];
	__be32 tpa;
} __attribute__((packed));

/* hdr returns a pointer to len bytes at off, or NULL if the packet is shorter. */
__inline void *hdr(struct __sk_buff *skb, __u32 off, __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	if (data + off + len > end)
		return NULL;
	return data + off;
}

__inline struct ethhdr *eth_hdr(struct __sk_buff *skb)
{
	return hdr(skb, 0, sizeof(struct ethhdr));
}

/* ipv4_hdr returns the IPv4 header after the Ethernet header, with sane IHL. */
__inline struct iphdr *ipv4_hdr(struct __sk_buff *skb)
{
	struct iphdr *ip = hdr(skb, sizeof(struct ethhdr), sizeof(struct iphdr));

	if (!ip || ip->version != 4 || ip->ihl < 5)
		return NULL;
	return ip;
}

__inline struct arp_eth_ipv4 *arp_hdr(struct __sk_buff *skb)
{
	struct arp_eth_ipv4 *arp = hdr(skb, sizeof(struct ethhdr), sizeof(*arp));

	if (!arp || arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != ETH_ALEN || arp->plen != 4)
		return NULL;
	return arp;
}
