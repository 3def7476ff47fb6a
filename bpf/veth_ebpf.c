// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * veth-ebpf: the pod interface datapath. Both programs sit on the pod's
 * host-side veth, attached with tcx:
 *
 *   from_container (ingress, i.e. pod egress; first on the hook, before any
 *     chained plugin's program): VLAN-tagged frames dropped, anti-spoofing
 *     on IPv4 source and MAC and on ARP sender fields; same-node delivery straight into the
 *     destination pod's netns with bpf_redirect_peer; everything else goes to
 *     the next program in the chain (TCX_NEXT), then to the kernel stack.
 *
 *   to_container (egress, i.e. pod ingress from the node's stack): lets only
 *   untagged IPv4 packets addressed to this pod, and ARP, through, so a stray
 *   route cannot push another pod's traffic (or IPv6) into it.
 */

#include "braid.h"
#include "parse.h"
#include "endpoint.h"
#include "counters.h"
#include "veth_ebpf_counters.h"

/* own_endpoint returns the endpoint that owns ip4 if it sits behind this veth. */
__inline struct endpoint_info *own_endpoint(struct __sk_buff *skb, __u32 ip4)
{
	struct endpoint_info *ep = endpoint_lookup(ip4);

	if (!ep || ep->ifindex != skb->ifindex)
		return NULL;
	return ep;
}

__inline int from_container_arp(struct __sk_buff *skb, struct ethhdr *eth)
{
	struct arp_eth_ipv4 *arp = arp_hdr(skb);
	struct endpoint_info *ep;

	if (!arp) {
		count(CNT_DROP_MALFORMED);
		return TC_ACT_SHOT;
	}
	ep = own_endpoint(skb, arp->spa);
	if (!ep || !mac_equal(arp->sha, ep->pod_mac) || !mac_equal(eth->h_source, ep->pod_mac)) {
		count(CNT_DROP_SPOOF_ARP);
		return TC_ACT_SHOT;
	}
	count(CNT_PASS_NEXT);
	return BRAID_NEXT;
}

__inline int from_container_ipv4(struct __sk_buff *skb, struct ethhdr *eth)
{
	struct endpoint_info *src, *dst;
	/* A header that overruns its packet is dropped here, before it can
	 * reach another pod or a plugin further down the chain. */
	struct iphdr *ip = ipv4_hdr_checked(skb);

	if (!ip) {
		count(CNT_DROP_MALFORMED);
		return TC_ACT_SHOT;
	}
	src = own_endpoint(skb, ip->saddr);
	if (!src) {
		count(CNT_DROP_SPOOF_IP);
		return TC_ACT_SHOT;
	}
	if (!mac_equal(eth->h_source, src->pod_mac)) {
		count(CNT_DROP_SPOOF_MAC);
		return TC_ACT_SHOT;
	}

	dst = endpoint_lookup(ip->daddr);
	if (!dst) {
		count(CNT_PASS_NEXT);
		return BRAID_NEXT;
	}
	/* eth may not be touched after a helper that changes the packet; none ran. */
	mac_copy(eth->h_dest, dst->pod_mac);
	mac_copy(eth->h_source, dst->host_mac);
	count(CNT_REDIRECT_PEER);
	return bpf_redirect_peer(dst->ifindex, 0);
}

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	struct ethhdr *eth = eth_hdr(skb);

	if (!eth) {
		count(CNT_DROP_MALFORMED);
		return TC_ACT_SHOT;
	}
	if (vlan_tagged(skb, eth)) {
		count(CNT_DROP_VLAN);
		return TC_ACT_SHOT;
	}
	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP):
		return from_container_ipv4(skb, eth);
	case bpf_htons(ETH_P_ARP):
		return from_container_arp(skb, eth);
	default:
		/* braid pods are IPv4-only; IPv6 is disabled in the pod. */
		count(CNT_DROP_PROTO);
		return TC_ACT_SHOT;
	}
}

SEC("tc")
int to_container(struct __sk_buff *skb)
{
	struct ethhdr *eth = eth_hdr(skb);
	struct iphdr *ip;

	if (!eth) {
		count(CNT_DROP_MALFORMED);
		return TC_ACT_SHOT;
	}
	if (vlan_tagged(skb, eth)) {
		count(CNT_DROP_VLAN);
		return TC_ACT_SHOT;
	}
	if (eth->h_proto == bpf_htons(ETH_P_ARP)) {
		count(CNT_TO_CONTAINER);
		return BRAID_NEXT;
	}
	if (eth->h_proto != bpf_htons(ETH_P_IP)) {
		/* IPv6 is disabled in the pod; nothing else is braid's to carry. */
		count(CNT_DROP_PROTO);
		return TC_ACT_SHOT;
	}
	ip = ipv4_hdr(skb);
	if (!ip) {
		count(CNT_DROP_MALFORMED);
		return TC_ACT_SHOT;
	}
	if (!own_endpoint(skb, ip->daddr)) {
		count(CNT_DROP_NOT_OURS);
		return TC_ACT_SHOT;
	}
	count(CNT_TO_CONTAINER);
	return BRAID_NEXT;
}

char __license[] SEC("license") = "Dual BSD/GPL";
