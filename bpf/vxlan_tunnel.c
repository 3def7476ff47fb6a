// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * vxlan-tunnel: the overlay between nodes, on one collect_md VXLAN device.
 *
 *   from_container (tcx ingress of a pod's host veth, after veth-ebpf): a
 *     packet for another node's pod CIDR gets its tunnel key from the tunnel
 *     map, its TTL decremented (it is routed), and is redirected to the
 *     VXLAN device; one too large for the overlay or whose TTL expires here,
 *     and anything else (not a pod CIDR: the stack's netfilter must see
 *     it): TCX_NEXT. A VLAN-tagged frame is dropped.
 *   to_overlay (tcx egress of the VXLAN device): sets the tunnel key of
 *     packets the node's stack routes into the device (node-to-pod traffic,
 *     and the stack fallback).
 *   from_overlay (tcx ingress of the VXLAN device): accepts decapsulated
 *     packets only from known nodes (tunnel_peers), with inner sources inside
 *     that node's pod CIDR or the node itself, and delivers local pods'
 *     packets with bpf_redirect_peer.
 */

#include "braid.h"
#include "parse.h"
#include "endpoint.h"
#include "counters.h"
#include "vxlan_tunnel_counters.h"
#include "l3.h"

#define TUNNEL_PEERS_MAX 4096

struct tunnel_key {
	__u32 prefixlen;
	__u32 ip4; /* network byte order */
};

struct tunnel_endpoint {
	__u32 node_ip; /* network byte order */
	__u32 flags;   /* reserved, zero */
};

/* Remote pod CIDR -> the node that owns it. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct tunnel_key);
	__type(value, struct tunnel_endpoint);
	__uint(max_entries, TUNNEL_PEERS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tunnel_map SEC(".maps");

/* Node IPs allowed as outer sources: the known peers. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);   /* node IP, network byte order */
	__type(value, __u32); /* reserved, zero */
	__uint(max_entries, TUNNEL_PEERS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tunnel_peers SEC(".maps");

struct tunnel_conf {
	__u32 vxlan_ifindex;
	__u32 vni;
	__u32 node_ip; /* this node, network byte order: the outer source */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct tunnel_conf);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tunnel_settings SEC(".maps");

__inline struct tunnel_conf *settings(void)
{
	__u32 zero = 0;
	struct tunnel_conf *s = bpf_map_lookup_elem(&tunnel_settings, &zero);

	return s && s->vxlan_ifindex ? s : NULL;
}

__inline struct tunnel_endpoint *tunnel_lookup(__u32 ip4)
{
	struct tunnel_key key = { .prefixlen = 32, .ip4 = ip4 };

	return bpf_map_lookup_elem(&tunnel_map, &key);
}

/* set_key points the packet at te's node; -1 if the kernel refuses. */
__inline int set_key(struct __sk_buff *skb, struct tunnel_conf *s, struct tunnel_endpoint *te)
{
	struct bpf_tunnel_key key = {};

	key.remote_ipv4 = bpf_ntohl(te->node_ip);
	key.local_ipv4 = bpf_ntohl(s->node_ip);
	key.tunnel_id = s->vni;
	key.tunnel_ttl = 64;
	if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0) {
		count(CNT_DROP_SET_KEY);
		return -1;
	}
	return 0;
}

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	struct tunnel_conf *s = settings();
	/* Behind ptp, no veth-ebpf has checked the pod's header: lengths
	 * must add up before a redirect skips the stack's checks. */
	struct iphdr *ip = ipv4_hdr_checked(skb);
	struct ethhdr *eth = eth_hdr(skb);
	struct tunnel_endpoint *te = NULL;
	__u32 mtu = 0;

	/* Behind ptp, this is the first program to see a pod's frames too. */
	if (eth && vlan_tagged(skb, eth)) {
		count(CNT_DROP_VLAN);
		return TC_ACT_SHOT;
	}
	if (ip && s)
		te = tunnel_lookup(ip->daddr);
	if (!te) {
		count(CNT_PASS_NEXT);
		return BRAID_NEXT;
	}
	/* The node routes the packet: the stack answers TTL expiry (ICMP). */
	if (ip->ttl <= 1) {
		count(CNT_TTL_EXPIRED);
		return BRAID_NEXT;
	}
	/*
	 * bpf_redirect skips the MTU check the stack's forwarding would make:
	 * a packet the overlay cannot carry whole (its pod's MTU is larger than
	 * the overlay's, e.g. after the underlay's MTU shrank) would leave in
	 * fragmented outer packets, DF or not. The stack answers it instead:
	 * ICMP "fragmentation needed" with the overlay's MTU when DF is set,
	 * inner fragments otherwise (the route to the pod CIDR is via the
	 * device, and to_overlay keys them). GSO packets are checked segment
	 * by segment. Checked before the key is set: the stack must not get a
	 * packet carrying tunnel metadata.
	 */
	if (bpf_check_mtu(skb, s->vxlan_ifindex, &mtu, 0, BPF_MTU_CHK_SEGS) != BPF_MTU_CHK_RET_SUCCESS) {
		count(CNT_FRAG_NEEDED);
		return BRAID_NEXT;
	}
	if (ipv4_dec_ttl(skb, ip->ttl) < 0) {
		count(CNT_DROP_REWRITE);
		return TC_ACT_SHOT;
	}
	if (set_key(skb, s, te) < 0)
		return TC_ACT_SHOT;
	count(CNT_ENCAP);
	return bpf_redirect(s->vxlan_ifindex, 0);
}

SEC("tc")
int to_overlay(struct __sk_buff *skb)
{
	struct tunnel_conf *s = settings();
	/* Behind ptp, no veth-ebpf has checked the pod's header: lengths
	 * must add up before a redirect skips the stack's checks. */
	struct iphdr *ip = ipv4_hdr_checked(skb);
	struct tunnel_endpoint *te = NULL;

	if (!s) {
		count(CNT_NOT_CONFIGURED);
		return TC_ACT_SHOT;
	}
	if (ip)
		te = tunnel_lookup(ip->daddr);
	if (!te) {
		/* A collect_md device cannot send without a key. */
		count(CNT_DROP_NO_KEY);
		return TC_ACT_SHOT;
	}
	if (set_key(skb, s, te) < 0)
		return TC_ACT_SHOT;
	return BRAID_NEXT;
}

/* inner_source_ok: the sender may only speak for its own pods and itself. */
__inline bool inner_source_ok(__u32 saddr, __u32 outer_src)
{
	struct tunnel_endpoint *te;

	if (saddr == outer_src)
		return true;
	te = tunnel_lookup(saddr);
	return te && te->node_ip == outer_src;
}

SEC("tc")
int from_overlay(struct __sk_buff *skb)
{
	struct tunnel_conf *s = settings();
	struct bpf_tunnel_key key = {};
	struct endpoint_info *ep;
	struct iphdr *ip;
	__u32 outer_src;
	int ret;

	if (!s) {
		count(CNT_NOT_CONFIGURED);
		return TC_ACT_SHOT;
	}
	if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0) < 0) {
		count(CNT_DROP_NO_KEY);
		return TC_ACT_SHOT;
	}
	if (key.tunnel_id != s->vni) {
		count(CNT_DROP_WRONG_VNI);
		return TC_ACT_SHOT;
	}
	outer_src = bpf_htonl(key.remote_ipv4);
	if (!bpf_map_lookup_elem(&tunnel_peers, &outer_src)) {
		count(CNT_DROP_UNKNOWN_PEER);
		return TC_ACT_SHOT;
	}
	/* The inner frame's tag went to skb metadata on receive: nodes
	 * send untagged frames only. */
	if (skb->vlan_present) {
		count(CNT_DROP_VLAN);
		return TC_ACT_SHOT;
	}
	/* Delivery skips the stack's checks: lengths must add up. */
	ip = ipv4_hdr_checked(skb);
	if (!ip) {
		count(CNT_DROP_MALFORMED);
		return TC_ACT_SHOT;
	}
	if (!inner_source_ok(ip->saddr, outer_src)) {
		count(CNT_DROP_SPOOFED_INNER);
		return TC_ACT_SHOT;
	}
	ep = endpoint_lookup(ip->daddr);
	if (!ep || ip->ttl <= 1) {
		/*
		 * For the node itself, or a TTL that expires here (the stack
		 * answers with ICMP "time exceeded"). The inner destination MAC
		 * is the sender's, not this device's: make the stack take it.
		 */
		bpf_skb_change_type(skb, 0 /* PACKET_HOST */);
		count(CNT_DECAP_TO_STACK);
		return BRAID_NEXT;
	}
	ret = deliver_local(skb, ip, ep);
	count(ret == TC_ACT_SHOT ? CNT_DROP_REWRITE : CNT_DECAP_DELIVER);
	return ret;
}

char __license[] SEC("license") = "Dual BSD/GPL";
