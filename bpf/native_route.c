// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * native-route: pods on different nodes without an overlay. The node's routing
 * table holds a route per remote pod CIDR via that node's IP; the programs
 * let pod traffic skip the stack:
 *
 *   from_container (tcx ingress of a pod's host veth, after veth-ebpf): a
 *     packet for another node's pod CIDR (native_peers) is looked up with
 *     bpf_fib_lookup and, routed out of the node device, sent there directly
 *     (bpf_redirect, or bpf_redirect_neigh when the next hop is not resolved
 *     yet). Everything else (the internet, a metadata service, a service
 *     VIP, multicast) and anything the lookup cannot answer (local,
 *     fragmentation needed, no route...) goes on with TCX_NEXT, to the
 *     stack, whose netfilter (DNAT, FORWARD, MASQUERADE) must see it.
 *   from_netdev (tcx ingress of the node device): a packet for a pod on this
 *     node goes straight into its netns with bpf_redirect_peer; an IPv4
 *     header that lies about its lengths is dropped; a VLAN-tagged frame is
 *     the stack's (a VLAN device of the node may own it).
 */

#include "braid.h"
#include "parse.h"
#include "endpoint.h"
#include "counters.h"
#include "native_route_counters.h"
#include "l3.h"

struct native_conf {
	__u32 device_ifindex;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct native_conf);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} native_settings SEC(".maps");

#define NATIVE_PEERS_MAX 4096

struct peer_key {
	__u32 prefixlen;
	__u32 ip4; /* network byte order */
};

/* Other nodes' pod CIDRs -> the node IP (network byte order). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct peer_key);
	__type(value, __u32);
	__uint(max_entries, NATIVE_PEERS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} native_peers SEC(".maps");

__inline __u32 device_ifindex(void)
{
	__u32 zero = 0;
	struct native_conf *s = bpf_map_lookup_elem(&native_settings, &zero);

	return s ? s->device_ifindex : 0;
}

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	/* Behind ptp, no veth-ebpf has checked the pod's header: lengths
	 * must add up before a redirect skips the stack's checks. */
	struct iphdr *ip = ipv4_hdr_checked(skb);
	struct ethhdr *eth = eth_hdr(skb);
	struct bpf_fib_lookup fib = {};
	struct peer_key peer;
	__u32 dev = device_ifindex();
	__u32 mtu = 0;
	long rc;

	/* Behind ptp, this is the first program to see a pod's frames too. */
	if (eth && vlan_tagged(skb, eth)) {
		count(CNT_DROP_VLAN);
		return TC_ACT_SHOT;
	}
	if (!ip || !dev || ip->ttl <= 1) {
		count(CNT_PASS_NEXT);
		return BRAID_NEXT;
	}
	peer.prefixlen = 32;
	peer.ip4 = ip->daddr;
	if (!bpf_map_lookup_elem(&native_peers, &peer)) {
		count(CNT_NOT_PEER);
		return BRAID_NEXT;
	}
	fib.family = AF_INET;
	fib.tos = ip->tos;
	fib.l4_protocol = ip->protocol;
	/*
	 * With tot_len the lookup checks the packet against the route's MTU.
	 * A GSO packet's tot_len is the whole train, not a segment: its
	 * segments are checked against the device below instead.
	 */
	if (!skb->gso_size)
		fib.tot_len = bpf_ntohs(ip->tot_len);
	fib.ipv4_src = ip->saddr;
	fib.ipv4_dst = ip->daddr;
	fib.ifindex = skb->ingress_ifindex;

	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if ((rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) || fib.ifindex != dev ||
	    (skb->gso_size && bpf_check_mtu(skb, dev, &mtu, 0, BPF_MTU_CHK_SEGS) != BPF_MTU_CHK_RET_SUCCESS)) {
		/* Not ours to forward: local, frag needed, unreachable, another device. */
		count(CNT_FIB_TO_STACK);
		return BRAID_NEXT;
	}
	if (ipv4_dec_ttl(skb, ip->ttl) < 0) {
		count(CNT_DROP_REWRITE);
		return TC_ACT_SHOT;
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = { .nh_family = AF_INET, .ipv4_nh = fib.ipv4_dst };

		count(CNT_FIB_REDIRECT_NEIGH);
		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	if (set_macs(skb, fib.dmac, fib.smac) < 0) {
		count(CNT_DROP_REWRITE);
		return TC_ACT_SHOT;
	}
	count(CNT_FIB_REDIRECT);
	return bpf_redirect(fib.ifindex, 0);
}

/* says_ipv4 reports whether the frame's EtherType is IPv4. */
__inline bool says_ipv4(struct __sk_buff *skb)
{
	struct ethhdr *eth = eth_hdr(skb);

	return eth && eth->h_proto == bpf_htons(ETH_P_IP);
}

SEC("tc")
int from_netdev(struct __sk_buff *skb)
{
	struct endpoint_info *ep;
	int ret;
	/* Delivery skips the stack's checks, so the header's lengths must
	 * add up; one that lies is dropped here, as the stack would. */
	struct iphdr *ip = ipv4_hdr_checked(skb);

	if (!ip && says_ipv4(skb)) {
		count(CNT_DROP_NETDEV_MALFORMED);
		return TC_ACT_SHOT;
	}
	/* A TTL that expires here is the stack's to answer (ICMP time
	 * exceeded); a tagged frame is for a VLAN device, if any. */
	if (!ip || ip->ttl <= 1 || skb->vlan_present || !(ep = endpoint_lookup(ip->daddr))) {
		count(CNT_NETDEV_PASS);
		return BRAID_NEXT;
	}
	ret = deliver_local(skb, ip, ep);
	count(ret == TC_ACT_SHOT ? CNT_DROP_REWRITE : CNT_NETDEV_DELIVER);
	return ret;
}

char __license[] SEC("license") = "Dual BSD/GPL";
