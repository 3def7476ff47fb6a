/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* IPv4 forwarding helpers: what a router does to a packet it forwards. */
#pragma once

#include "braid.h"

#define AF_INET 2
#define ETH_HLEN 14
#define IP_TTL_OFF   (ETH_HLEN + offsetof(struct iphdr, ttl))
#define IP_CSUM_OFF  (ETH_HLEN + offsetof(struct iphdr, check))

/*
 * ipv4_dec_ttl decrements the TTL and fixes the header checksum. The caller
 * has checked ttl > 1 (the stack answers TTL expiry with ICMP). Packet
 * pointers are invalid afterwards.
 */
__inline int ipv4_dec_ttl(struct __sk_buff *skb, __u8 ttl)
{
	__u8 new_ttl = ttl - 1;

	/* ttl is the high byte of the 16-bit word it shares with protocol. */
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, bpf_htons((__u16)ttl << 8),
				bpf_htons((__u16)new_ttl << 8), 2) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, IP_TTL_OFF, &new_ttl, 1, 0);
}

/* set_macs rewrites the Ethernet addresses; pointers are invalid afterwards. */
__inline int set_macs(struct __sk_buff *skb, const __u8 *dst, const __u8 *src)
{
	if (bpf_skb_store_bytes(skb, 0, dst, ETH_ALEN, 0) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, ETH_ALEN, src, ETH_ALEN, 0);
}

/*
 * deliver_local forwards an IPv4 packet to a pod on this node: TTL, MACs,
 * then straight into the pod's netns. Used by every from-outside program.
 */
__inline int deliver_local(struct __sk_buff *skb, struct iphdr *ip, struct endpoint_info *ep)
{
	__u32 ifindex = ep->ifindex;
	__u8 pod_mac[ETH_ALEN], host_mac[ETH_ALEN];

	if (ip->ttl <= 1)
		return BRAID_NEXT;
	mac_copy(pod_mac, ep->pod_mac);
	mac_copy(host_mac, ep->host_mac);
	if (ipv4_dec_ttl(skb, ip->ttl) < 0 || set_macs(skb, pod_mac, host_mac) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect_peer(ifindex, 0);
}
