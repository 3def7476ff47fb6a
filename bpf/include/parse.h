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

/*
 * ipv4_hdr returns the IPv4 header after the Ethernet header, with sane IHL,
 * of a frame whose EtherType says IPv4: a frame that only looks like one
 * inside would be handed to a stack that does not take it for IPv4.
 */
__inline struct iphdr *ipv4_hdr(struct __sk_buff *skb)
{
	struct ethhdr *eth = eth_hdr(skb);
	struct iphdr *ip;

	if (!eth || eth->h_proto != bpf_htons(ETH_P_IP))
		return NULL;
	ip = hdr(skb, sizeof(struct ethhdr), sizeof(struct iphdr));
	if (!ip || ip->version != 4 || ip->ihl < 5)
		return NULL;
	return ip;
}

/*
 * ipv4_hdr_checked is ipv4_hdr for packets a pod sends, which may lie about
 * their lengths: the header (options included) must fit in the total
 * length, and the total length in the packet (which may be longer: Ethernet
 * padding). A GSO packet of BIG TCP carries total length 0.
 */
__inline struct iphdr *ipv4_hdr_checked(struct __sk_buff *skb)
{
	struct iphdr *ip = ipv4_hdr(skb);
	__u32 tot_len;

	if (!ip)
		return NULL;
	tot_len = bpf_ntohs(ip->tot_len);
	if (tot_len == 0 && skb->gso_size)
		return ip;
	if (tot_len < (__u32)ip->ihl * 4 || sizeof(struct ethhdr) + tot_len > skb->len)
		return NULL;
	return ip;
}

#define ETH_P_8021Q  0x8100
#define ETH_P_8021AD 0x88A8

/*
 * vlan_tagged reports a frame that carries an 802.1Q/802.1AD tag, either
 * in skb metadata (the receiving device, a veth's host side included,
 * moves the outer tag there before tc runs) or still in the frame (the
 * inner tag of a double-tagged frame). braid pods and nodes exchange
 * untagged frames only: a tagged one redirected out of the node device
 * would leave tagged, onto whatever VLAN the underlay trunks.
 */
__inline bool vlan_tagged(struct __sk_buff *skb, struct ethhdr *eth)
{
	return skb->vlan_present || eth->h_proto == bpf_htons(ETH_P_8021Q) ||
	       eth->h_proto == bpf_htons(ETH_P_8021AD);
}

__inline struct arp_eth_ipv4 *arp_hdr(struct __sk_buff *skb)
{
	struct arp_eth_ipv4 *arp = hdr(skb, sizeof(struct ethhdr), sizeof(*arp));

	if (!arp || arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != ETH_ALEN || arp->plen != 4)
		return NULL;
	return arp;
}
