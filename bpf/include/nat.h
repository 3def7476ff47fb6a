/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Address and port rewriting with checksum fixes, for IPv4 TCP and UDP. */
#pragma once

#include "braid.h"
#include "l3.h"

#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IP_SADDR_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define IP_DADDR_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))

/* l4_ports are the first four bytes of TCP and UDP alike. */
struct l4_ports {
	__be16 sport;
	__be16 dport;
};

/* l4_csum_off is where the TCP or UDP checksum sits, or 0 for other protocols. */
__inline __u32 l4_csum_off(__u8 proto, __u32 l4_off)
{
	if (proto == IPPROTO_TCP)
		return l4_off + 16; /* offsetof(struct tcphdr, check) */
	if (proto == IPPROTO_UDP)
		return l4_off + 6;  /* offsetof(struct udphdr, check) */
	return 0;
}

/*
 * nat4 rewrites one side (source if src, else destination) of an IPv4
 * TCP/UDP packet whose L4 header starts at l4_off: address and port, with
 * the IP and L4 checksums fixed. A UDP checksum of zero stays zero.
 * Packet pointers are invalid afterwards.
 */
__inline int nat4(struct __sk_buff *skb, bool src, __u8 proto, __u32 l4_off,
		  __be32 old_ip, __be32 new_ip, __be16 old_port, __be16 new_port)
{
	__u32 ip_off = src ? IP_SADDR_OFF : IP_DADDR_OFF;
	__u32 port_off = l4_off + (src ? 0 : 2);
	__u32 csum_off = l4_csum_off(proto, l4_off);
	__u64 mangled = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (!csum_off)
		return -1;
	if (old_ip != new_ip) {
		if (bpf_l4_csum_replace(skb, csum_off, old_ip, new_ip, BPF_F_PSEUDO_HDR | mangled | 4) < 0 ||
		    bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_ip, new_ip, 4) < 0 ||
		    bpf_skb_store_bytes(skb, ip_off, &new_ip, 4, 0) < 0)
			return -1;
	}
	if (old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port, mangled | 2) < 0 ||
		    bpf_skb_store_bytes(skb, port_off, &new_port, 2, 0) < 0)
			return -1;
	}
	return 0;
}

/*
 * ipv4_fix_csum recomputes the header checksum of an IPv4 header of
 * words32 32-bit words (5..7 here), after the program changed it wholesale.
 */
__inline int ipv4_fix_csum(struct __sk_buff *skb, __u32 words32)
{
	__u32 hdr[7] = {};
	__s64 sum;
	__u16 zero = 0;

	if (words32 < 5 || words32 > 7)
		return -1;
	if (bpf_skb_store_bytes(skb, IP_CSUM_OFF, &zero, 2, 0) < 0 ||
	    bpf_skb_load_bytes(skb, ETH_HLEN, hdr, words32 * 4) < 0)
		return -1;
	sum = bpf_csum_diff(NULL, 0, hdr, words32 * 4, 0);
	if (sum < 0)
		return -1;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	__u16 csum = ~(__u16)sum;
	return bpf_skb_store_bytes(skb, IP_CSUM_OFF, &csum, 2, 0);
}
