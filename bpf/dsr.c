// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * dsr: NodePort services with direct server return.
 *
 * A client outside the cluster sends to <node A IP>:<nodePort>. A picks a
 * backend with Maglev (the same on every node for the same backend set, so a
 * flow keeps its backend whichever node it enters) and:
 *   - backend on A: DNAT, record the flow, deliver to the pod;
 *   - backend on node B: DNAT to the backend and, on a TCP SYN or a UDP
 *     datagram, insert IPv4 option 0x9a (length 8) carrying A's address and
 *     the node port; send it to B (native: fib lookup + redirect; overlay:
 *     into the VXLAN device, whose own program sets the tunnel key). B records
 *     the flow from the option and delivers to the pod; the pod's replies are
 *     rewritten to come from A:nodePort and leave B straight to the client.
 *   - mode snat, or a packet that needs the option (SYN, UDP) but already
 *     carries options or would outgrow the MTU: SNAT to A as well, and A
 *     carries the replies back. A flow that began with SNAT keeps it; a DSR
 *     flow's later segments never switch (they need no option).
 * externalTrafficPolicy Local: local backends only, client address kept.
 * Replies whose new source is this node's own address (local backend, SNAT
 * replies) are sent through the fib by the program: the stack's forwarding
 * drops a packet from a local address as a martian.
 *
 * Programs: from_netdev (node device ingress, attached first, ahead of
 * native-route's, which would deliver an option-carrying packet itself),
 * from_overlay (VXLAN device ingress, attached first so it sees packets
 * before the tunnel delivers them), from_container (each pod's host veth
 * ingress: reply rewrite, and forged options from pods dropped).
 */

#include "braid.h"
#include "parse.h"
#include "endpoint.h"
#include "counters.h"
#include "dsr_counters.h"
#include "l3.h"
#include "nat.h"

#define DSR_OPT_TYPE 0x9a
#define DSR_OPT_LEN  8
#define DSR_SERVICES_MAX 4096 /* node ports, and Maglev tables */
#define DSR_FLOWS_MAX    (1 << 18)
#define DSR_NODES_MAX    4096
#define SNAT_TRIES 8

enum { MODE_DSR = 0, MODE_SNAT = 1 };
#define SVC_LOCAL 1 /* externalTrafficPolicy: Local */

struct dsr_opt {
	__u8   type;
	__u8   len;
	__be16 port;
	__be32 addr;
};

struct nodeport_key {
	__be16 port;
	__u8   proto;
	__u8   pad;
};

struct nodeport_svc {
	__u32 id;         /* its Maglev table in dsr_maglev */
	__u32 count;      /* backends; 0 refuses */
	__u32 flags;      /* SVC_LOCAL */
	__u32 table_size; /* Maglev table entries; never more than its table has */
};

/* An IPv4 address and port: a backend, or the service address of a flow. */
struct addr_port {
	__be32 ip;
	__be16 port;
	__u16  pad;
};

/* A flow as the backend sees it: client <-> backend. */
struct flow_key {
	__be32 client_ip;
	__be32 backend_ip;
	__be16 client_port;
	__be16 backend_port;
	__u8   proto;
	__u8   pad[3];
};

/* SNAT on the entry node: the backend's reply, addressed to node:snat_port. */
struct snat_rev_key {
	__be32 backend_ip;
	__be16 backend_port;
	__be16 snat_port;
	__u8   proto;
	__u8   pad[3];
};

struct snat_client {
	__be32 ip;
	__be16 port;
	__be16 node_port;
};

struct dsr_conf {
	__be32 node_ip;
	__u32  mode;           /* MODE_DSR or MODE_SNAT */
	__u32  overlay_ifindex; /* VXLAN device in overlay mode, else 0 */
	__u32  device_mtu;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct nodeport_key);
	__type(value, struct nodeport_svc);
	__uint(max_entries, DSR_SERVICES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dsr_nodeports SEC(".maps");

/*
 * A service's Maglev table: an array of table_size backends. Each is its own
 * map, of its own size (BPF_F_INNER_MAP: the 1 here is only the template's),
 * built whole before it replaces the service's old table in dsr_maglev in one
 * update, so a packet sees the old table or the new one, never a mix.
 * Mmapable, so that the plugin writes and compares a table as one block of
 * memory. Sizes, not BTF types: clang 14 gives an inner map's value type only
 * a forward declaration, which loaders cannot size.
 */
struct maglev_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct addr_port));
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE);
};

/*
 * Service id -> its Maglev table. Room for two per node port: a service
 * removed and another added on its node port have both tables during a sync.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 2 * DSR_SERVICES_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct maglev_table);
} dsr_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct flow_key);
	__type(value, struct addr_port);
	__uint(max_entries, DSR_FLOWS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dsr_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct snat_rev_key);
	__type(value, struct snat_client);
	__uint(max_entries, DSR_FLOWS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dsr_snat SEC(".maps");

/* Nodes whose DSR options (and tunnel packets) are trusted. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, __u32);
	__uint(max_entries, DSR_NODES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dsr_nodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct dsr_conf);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dsr_settings SEC(".maps");

struct packet {
	struct iphdr   *ip;
	struct l4_ports l4;
	__u32           l4_off;
	__be32          saddr, daddr;
	__u8            proto, ihl, ttl;
	bool            syn_only;
};

__inline struct dsr_conf *conf(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&dsr_settings, &zero);
}

/* parse reads IPv4 TCP/UDP headers into p; false for anything else. */
__inline bool parse(struct __sk_buff *skb, struct packet *p)
{
	/* Lengths must add up: dsr rewrites and delivers past the stack. */
	struct iphdr *ip = ipv4_hdr_checked(skb);
	struct l4_ports *l4;

	if (!ip || (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP))
		return false;
	if (ip->frag_off & bpf_htons(0x3fff)) /* fragments carry no ports */
		return false;
	p->ip = ip;
	p->ihl = ip->ihl;
	p->l4_off = ETH_HLEN + ip->ihl * 4;
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	p->ttl = ip->ttl;
	if (p->l4_off > ETH_HLEN + 60)
		return false;
	l4 = hdr(skb, p->l4_off, sizeof(*l4));
	if (!l4)
		return false;
	p->l4 = *l4;
	p->syn_only = false;
	if (p->proto == IPPROTO_TCP) {
		__u8 *flags = hdr(skb, p->l4_off + 13, 1);

		if (!flags)
			return false;
		p->syn_only = (*flags & 0x12) == 0x02; /* SYN without ACK */
	}
	return true;
}

/*
 * flow_hash mixes what stays the same whichever node a flow enters through:
 * the client's address and port, the protocol and the node port.
 */
__inline __u32 flow_hash(struct packet *p)
{
	__u32 h = 0x9e3779b9;

	h ^= p->saddr;
	h *= 0x85ebca6b;
	h ^= ((__u32)p->l4.sport << 16) | p->l4.dport;
	h *= 0xc2b2ae35;
	h ^= p->proto;
	h ^= h >> 16;
	h *= 0x7feb352d;
	h ^= h >> 15;
	return h;
}

__inline struct addr_port *pick(struct nodeport_svc *svc, struct packet *p)
{
	void *table;
	__u32 index;

	if (!svc->count || !svc->table_size)
		return NULL;
	table = bpf_map_lookup_elem(&dsr_maglev, &svc->id);
	if (!table)
		return NULL;
	index = flow_hash(p) % svc->table_size;
	return bpf_map_lookup_elem(table, &index);
}

__inline void record_flow(struct packet *p, __be32 backend_ip, __be16 backend_port,
			  __be32 svc_ip, __be16 svc_port)
{
	struct flow_key k = {
		.client_ip = p->saddr, .backend_ip = backend_ip,
		.client_port = p->l4.sport, .backend_port = backend_port, .proto = p->proto,
	};
	struct addr_port v = { .ip = svc_ip, .port = svc_port };

	bpf_map_update_elem(&dsr_flows, &k, &v, BPF_ANY);
}

/* deliver hands a packet for a local pod to it, if the pod is here. */
__inline int deliver(struct __sk_buff *skb, __be32 daddr)
{
	struct endpoint_info *ep = endpoint_lookup(daddr);
	struct iphdr *ip = ipv4_hdr(skb);

	if (!ep || !ip)
		return BRAID_NEXT;
	return deliver_local(skb, ip, ep);
}

/* insert_opt adds the DSR option after a 20-byte IPv4 header. */
__inline int insert_opt(struct __sk_buff *skb, __be32 svc_ip, __be16 svc_port)
{
	struct dsr_opt opt = { .type = DSR_OPT_TYPE, .len = DSR_OPT_LEN, .port = svc_port, .addr = svc_ip };
	struct iphdr *ip;
	__be16 tot_len;
	__u8 vihl = 0x47; /* version 4, IHL 7 */

	if (bpf_skb_adjust_room(skb, DSR_OPT_LEN, BPF_ADJ_ROOM_NET, 0) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(struct iphdr), &opt, sizeof(opt), 0) < 0)
		return -1;
	ip = ipv4_hdr(skb);
	if (!ip)
		return -1;
	tot_len = bpf_htons(bpf_ntohs(ip->tot_len) + DSR_OPT_LEN);
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &vihl, 1, 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, tot_len), &tot_len, 2, 0) < 0)
		return -1;
	return ipv4_fix_csum(skb, 7);
}

/*
 * fib_redirect sends a packet out of the device the fib picks for its
 * destination, without the stack: the way for any packet whose source dsr
 * made this node's own address (a reply from node:nodePort), which the
 * stack's forwarding path drops as a martian (accept_local is off on
 * nodes). What the lookup cannot answer goes to the stack. GSO packets are
 * checked against the device segment by segment (their tot_len is the
 * whole train).
 */
__inline int fib_redirect(struct __sk_buff *skb)
{
	struct bpf_fib_lookup fib = {};
	struct iphdr *ip = ipv4_hdr(skb);
	__u32 mtu = 0;
	long rc;

	if (!ip)
		return TC_ACT_SHOT;
	fib.family = AF_INET;
	fib.tos = ip->tos;
	fib.l4_protocol = ip->protocol;
	if (!skb->gso_size)
		fib.tot_len = bpf_ntohs(ip->tot_len);
	fib.ipv4_src = ip->saddr;
	fib.ipv4_dst = ip->daddr;
	fib.ifindex = skb->ingress_ifindex;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if ((rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH) && skb->gso_size &&
	    bpf_check_mtu(skb, fib.ifindex, &mtu, 0, BPF_MTU_CHK_SEGS) != BPF_MTU_CHK_RET_SUCCESS)
		rc = BPF_FIB_LKUP_RET_FRAG_NEEDED;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (set_macs(skb, fib.dmac, fib.smac) < 0)
			return TC_ACT_SHOT;
		return bpf_redirect(fib.ifindex, 0);
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = { .nh_family = AF_INET, .ipv4_nh = fib.ipv4_dst };

		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	/* The stack can still route it (and answer with ICMP if it cannot). */
	bpf_skb_change_type(skb, 0 /* PACKET_HOST */);
	return BRAID_NEXT;
}

/* forward sends a rewritten packet towards the node that has its destination. */
__inline int forward(struct __sk_buff *skb, struct dsr_conf *c)
{
	if (c->overlay_ifindex)
		return bpf_redirect(c->overlay_ifindex, 0); /* the tunnel's egress program keys it */
	return fib_redirect(skb);
}

/*
 * SNAT ports: a flow's candidates are the client's own port, then
 * SNAT_TRIES-1 ports from its hash; it takes the first one free, so a
 * lookup can stop at the first candidate nobody holds.
 */
__inline __be16 snat_candidate(struct packet *p, __u32 h, int i)
{
	return i == 0 ? p->l4.sport : bpf_htons(32768 + (h + i * 7919) % 28232);
}

/* snat_port finds a source port on this node for the client's flow. */
__inline int snat_port(struct packet *p, struct addr_port *be, __be16 *port)
{
	struct snat_client want = { .ip = p->saddr, .port = p->l4.sport, .node_port = p->l4.dport };
	struct snat_rev_key k = { .backend_ip = be->ip, .backend_port = be->port, .proto = p->proto };
	__u32 h = flow_hash(p);

	for (int i = 0; i < SNAT_TRIES; i++) {
		struct snat_client *have;

		k.snat_port = snat_candidate(p, h, i);
		have = bpf_map_lookup_elem(&dsr_snat, &k);
		if (!have || (have->ip == want.ip && have->port == want.port && have->node_port == want.node_port)) {
			if (!have && bpf_map_update_elem(&dsr_snat, &k, &want, BPF_NOEXIST) < 0)
				continue;
			*port = k.snat_port;
			return 0;
		}
	}
	return -1;
}

/* snat_known: the flow already holds an SNAT port (it began with SNAT). */
__inline bool snat_known(struct packet *p, struct addr_port *be)
{
	struct snat_rev_key k = { .backend_ip = be->ip, .backend_port = be->port, .proto = p->proto };
	__u32 h = flow_hash(p);

	for (int i = 0; i < SNAT_TRIES; i++) {
		struct snat_client *have;

		k.snat_port = snat_candidate(p, h, i);
		have = bpf_map_lookup_elem(&dsr_snat, &k);
		if (!have)
			return false;
		if (have->ip == p->saddr && have->port == p->l4.sport && have->node_port == p->l4.dport)
			return true;
	}
	return false;
}

__inline int nodeport_snat(struct __sk_buff *skb, struct dsr_conf *c, struct packet *p, struct addr_port *be)
{
	__be16 sport;

	if (snat_port(p, be, &sport) < 0) {
		count(CNT_DROP_SNAT_PORTS);
		return TC_ACT_SHOT;
	}
	if (nat4(skb, false, p->proto, p->l4_off, p->daddr, be->ip, p->l4.dport, be->port) < 0 ||
	    nat4(skb, true, p->proto, p->l4_off, p->saddr, c->node_ip, p->l4.sport, sport) < 0) {
		count(CNT_DROP_NAT);
		return TC_ACT_SHOT;
	}
	count(CNT_SNAT_FORWARD);
	return forward(skb, c);
}

/* nodeport handles a packet addressed to this node's node port. */
__inline int nodeport(struct __sk_buff *skb, struct dsr_conf *c, struct packet *p, struct nodeport_svc *svc)
{
	struct addr_port *be = pick(svc, p);
	__be32 svc_ip = p->daddr;
	__be16 svc_port = p->l4.dport;
	bool fits, needs_opt;

	if (!be || !svc->count) {
		count(CNT_DROP_NO_BACKEND);
		return TC_ACT_SHOT;
	}
	if (endpoint_lookup(be->ip)) {
		/* Local backend: the pod answers, its replies are rewritten on the way out. */
		record_flow(p, be->ip, be->port, svc_ip, svc_port);
		if (nat4(skb, false, p->proto, p->l4_off, p->daddr, be->ip, p->l4.dport, be->port) < 0) {
			count(CNT_DROP_NAT);
			return TC_ACT_SHOT;
		}
		count(CNT_LOCAL_DELIVER);
		return deliver(skb, be->ip);
	}
	if (svc->flags & SVC_LOCAL) {
		count(CNT_DROP_NO_BACKEND);
		return TC_ACT_SHOT;
	}
	if (c->mode == MODE_SNAT)
		return nodeport_snat(skb, c, p, be);
	/*
	 * The backend's node learns a TCP flow from its SYN; the other segments
	 * need no option, whatever options they carry. A flow that began with
	 * SNAT (its first packet could not take the option) keeps it: only a
	 * new SYN decides afresh.
	 */
	needs_opt = p->proto == IPPROTO_UDP || p->syn_only;
	if (!(p->proto == IPPROTO_TCP && p->syn_only) && snat_known(p, be))
		return nodeport_snat(skb, c, p, be);
	fits = p->ihl == 5 && bpf_ntohs(p->ip->tot_len) + DSR_OPT_LEN <= c->device_mtu;
	if (needs_opt && !fits) {
		count(CNT_SNAT_FALLBACK);
		return nodeport_snat(skb, c, p, be);
	}
	if (nat4(skb, false, p->proto, p->l4_off, p->daddr, be->ip, p->l4.dport, be->port) < 0) {
		count(CNT_DROP_NAT);
		return TC_ACT_SHOT;
	}
	if (needs_opt) {
		if (insert_opt(skb, svc_ip, svc_port) < 0) {
			count(CNT_DROP_NAT);
			return TC_ACT_SHOT;
		}
		count(CNT_DSR_OPT_ADDED);
	}
	count(CNT_DSR_FORWARD);
	return forward(skb, c);
}

/*
 * accept_opt records a flow announced by a DSR option. The option must name
 * a known node as the service address (only nodes serve node ports; pods'
 * options never leave their node, see from_container), and in overlay mode
 * the tunnel must come from a known node too (tunnel_src, else 0).
 */
__inline bool accept_opt(struct __sk_buff *skb, struct packet *p, __be32 tunnel_src)
{
	struct dsr_opt *opt;
	__be32 svc_ip;

	if (p->ihl != 7)
		return false;
	opt = hdr(skb, ETH_HLEN + sizeof(struct iphdr), sizeof(*opt));
	if (!opt || opt->type != DSR_OPT_TYPE || opt->len != DSR_OPT_LEN)
		return false;
	svc_ip = opt->addr;
	if (!bpf_map_lookup_elem(&dsr_nodes, &svc_ip) ||
	    (tunnel_src && !bpf_map_lookup_elem(&dsr_nodes, &tunnel_src)) ||
	    !endpoint_lookup(p->daddr)) {
		count(CNT_DROP_FORGED_OPT);
		return false;
	}
	record_flow(p, p->daddr, p->l4.dport, opt->addr, opt->port);
	count(CNT_OPT_ACCEPTED);
	return true;
}

/* known_flow: a later packet of a flow a trusted node announced. */
__inline bool known_flow(struct packet *p, __be32 tunnel_src)
{
	struct flow_key k = {
		.client_ip = p->saddr, .backend_ip = p->daddr,
		.client_port = p->l4.sport, .backend_port = p->l4.dport, .proto = p->proto,
	};

	return bpf_map_lookup_elem(&dsr_nodes, &tunnel_src) && bpf_map_lookup_elem(&dsr_flows, &k);
}

/* snat_reply turns a backend's reply to this node back into one to the client. */
__inline int snat_reply(struct __sk_buff *skb, struct dsr_conf *c, struct packet *p)
{
	struct snat_rev_key k = {
		.backend_ip = p->saddr, .backend_port = p->l4.sport, .snat_port = p->l4.dport, .proto = p->proto,
	};
	struct snat_client *cl = bpf_map_lookup_elem(&dsr_snat, &k);
	struct snat_client client;

	if (!cl)
		return BRAID_NEXT;
	client = *cl;
	if (nat4(skb, true, p->proto, p->l4_off, p->saddr, c->node_ip, p->l4.sport, client.node_port) < 0 ||
	    nat4(skb, false, p->proto, p->l4_off, p->daddr, client.ip, p->l4.dport, client.port) < 0) {
		count(CNT_DROP_NAT);
		return TC_ACT_SHOT;
	}
	count(CNT_SNAT_REPLY);
	/* From this node's own address now: the stack would not forward it. */
	return fib_redirect(skb);
}

SEC("tc")
int from_netdev(struct __sk_buff *skb)
{
	struct dsr_conf *c = conf();
	struct nodeport_svc *svc;
	struct packet p;

	if (!c || !parse(skb, &p))
		return BRAID_NEXT;
	if (p.daddr == c->node_ip) {
		struct nodeport_key k = { .port = p.l4.dport, .proto = p.proto };

		svc = bpf_map_lookup_elem(&dsr_nodeports, &k);
		if (svc)
			return nodeport(skb, c, &p, svc);
		return snat_reply(skb, c, &p);
	}
	if (p.ihl == 7 && accept_opt(skb, &p, 0))
		return deliver(skb, p.daddr);
	count(CNT_PASS);
	return BRAID_NEXT;
}

SEC("tc")
int from_overlay(struct __sk_buff *skb)
{
	struct bpf_tunnel_key key = {};
	struct dsr_conf *c = conf();
	struct packet p;
	__be32 sender;

	if (!c || !parse(skb, &p))
		return BRAID_NEXT;
	if (p.daddr == c->node_ip)
		return snat_reply(skb, c, &p);
	if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0) < 0)
		return BRAID_NEXT;
	sender = bpf_htonl(key.remote_ipv4);
	/*
	 * The tunnel only accepts inner sources of the sending node; a DSR flow's
	 * source is the client, so dsr delivers the flow's packets itself: the
	 * first by its option, the rest because the flow is known.
	 */
	if ((p.ihl == 7 && accept_opt(skb, &p, sender)) || known_flow(&p, sender))
		return deliver(skb, p.daddr);
	return BRAID_NEXT;
}

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	struct dsr_conf *c;
	struct packet p;
	struct addr_port *svc;
	struct addr_port addr;
	struct flow_key k = {};

	if (!parse(skb, &p))
		return BRAID_NEXT;
	if (p.ihl > 5) {
		/* Only nodes speak DSR; a pod that sends an option is forging one. */
		struct dsr_opt *opt = hdr(skb, ETH_HLEN + sizeof(struct iphdr), sizeof(*opt));

		if (opt && opt->type == DSR_OPT_TYPE) {
			count(CNT_DROP_FORGED_OPT);
			return TC_ACT_SHOT;
		}
	}
	k.client_ip = p.daddr;
	k.backend_ip = p.saddr;
	k.client_port = p.l4.dport;
	k.backend_port = p.l4.sport;
	k.proto = p.proto;
	svc = bpf_map_lookup_elem(&dsr_flows, &k);
	if (!svc)
		return BRAID_NEXT;
	addr = *svc;
	if (nat4(skb, true, p.proto, p.l4_off, p.saddr, addr.ip, p.l4.sport, addr.port) < 0) {
		count(CNT_DROP_NAT);
		return TC_ACT_SHOT;
	}
	count(CNT_REPLY_REWRITE);
	/*
	 * A reply from this node's own address (a backend here, reached through
	 * this node's node port) is forwarded here: the stack would drop it as
	 * a martian. Replies from another node's address go on.
	 */
	c = conf();
	if (c && addr.ip == c->node_ip)
		return fib_redirect(skb);
	return BRAID_NEXT;
}

char __license[] SEC("license") = "Dual BSD/GPL";
