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
 * State lifetimes: every dsr_flows/dsr_flows_new/dsr_snat entry carries its
 * connection's state and an expiry (bpf_ktime_get_ns); an expired entry is
 * treated as absent and replaced. TCP: SYN seen, unanswered -> tcp_syn_ns;
 * the backend answered (a non-SYN segment from it) -> tcp_est_ns; FIN
 * seen -> tcp_close_ns; RST seen -> tcp_reset_ns; UDP: udp_ns idle. Unanswered flows live in
 * their own map (dsr_flows_new), so a SYN flood evicts only other
 * unanswered flows, never an established one. The plugin's reconcile (GC,
 * braid sync, the agent) deletes what expired.
 *
 * Tunnels are authenticated first: from_overlay reads nothing of a packet
 * before its outer source is a known node (dsr_nodes) and its VNI the
 * overlay's; from_netdev takes SNAT replies only in native mode, and only
 * from the node the fib routes their source to (its MAC).
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
#define DSR_FLOWS_MAX    (1 << 18) /* established flows; SNAT entries */
#define DSR_NEW_MAX      (1 << 16) /* unanswered flows */
#define DSR_NODES_MAX    4096
#define SNAT_TRIES 32

enum { MODE_DSR = 0, MODE_SNAT = 1 };

/* A connection's state, in every flow and SNAT entry. */
enum {
	ST_NEW = 0,     /* TCP: SYN seen, the backend has not answered; UDP: unanswered */
	ST_EST = 1,     /* the backend answered */
	ST_CLOSING = 2, /* TCP: FIN seen */
	ST_RESET = 3,   /* TCP: RST seen */
};
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
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

/* An External service's address (externalIPs, LoadBalancer ingress). */
struct external_key {
	__be32 ip;
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
	__be16 node_port; /* the service port the client sent to */
	__u8   state;
	__u8   pad[3];
	__be32 svc_ip;    /* the address it sent to: this node, or an External VIP */
	__u64  expires;   /* bpf_ktime_get_ns */
};

/* A flow's service address (where replies come from), state and expiry. */
struct flow_val {
	struct addr_port svc;
	__u8   state;
	__u8   pad[7];
	__u64  expires; /* bpf_ktime_get_ns */
};

struct dsr_conf {
	__be32 node_ip;
	__u32  mode;           /* MODE_DSR or MODE_SNAT */
	__u32  overlay_ifindex; /* VXLAN device in overlay mode, else 0 */
	__u32  device_mtu;
	__u32  vni;            /* the overlay's VNI (overlay mode) */
	__u16  snat_lo;        /* SNAT ports: snat_lo .. snat_lo+snat_span-1, */
	__u16  snat_span;      /* outside the ephemeral and node-port ranges */
	__u64  tcp_syn_ns;     /* lifetimes, see the top of the file */
	__u64  tcp_est_ns;
	__u64  tcp_close_ns;
	__u64  tcp_reset_ns;
	__u64  udp_ns;
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
 * External services: VIP:port served like a node port (the same entry
 * and Maglev table as the service's node port, if it has one) when a
 * packet for it reaches the node device.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct external_key);
	__type(value, struct nodeport_svc);
	__uint(max_entries, DSR_SERVICES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dsr_externals SEC(".maps");

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

/* Flows the backend answered (ST_EST, ST_CLOSING). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct flow_key);
	__type(value, struct flow_val);
	__uint(max_entries, DSR_FLOWS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dsr_flows SEC(".maps");

/*
 * Flows not answered yet (ST_NEW): anyone can make these (a spoofed SYN),
 * so they have a map of their own; a flood evicts only its own kind.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct flow_key);
	__type(value, struct flow_val);
	__uint(max_entries, DSR_NEW_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dsr_flows_new SEC(".maps");

/*
 * SNAT entries: not LRU, a live entry is never evicted; a flood holds
 * ports for tcp_syn_ns at most (expired entries are taken over).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct snat_rev_key);
	__type(value, struct snat_client);
	__uint(max_entries, DSR_FLOWS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dsr_snat SEC(".maps");

/* The client's side of an SNAT entry: which port it holds. */
struct snat_fwd_key {
	__be32 client_ip;
	__be32 svc_ip;
	__be16 client_port;
	__be16 node_port;
	__u8   proto;
	__u8   pad[3];
};

/*
 * Client -> its SNAT port, so that a flow finds its port in one lookup. It
 * names a port only while dsr_snat says the port is this client's (a port
 * taken over leaves a stale entry here, which nothing uses): LRU, stale
 * entries go first.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct snat_fwd_key);
	__type(value, __be16);
	__uint(max_entries, DSR_FLOWS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dsr_snat_fwd SEC(".maps");

/* Nodes whose DSR options (and tunnel packets) are trusted. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, __u32);
	__uint(max_entries, DSR_NODES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dsr_nodes SEC(".maps");

/* A peer's pod CIDR -> that node's address: which node a backend is on. */
struct peer_cidr {
	__u32  prefixlen;
	__be32 ip;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct peer_cidr);
	__type(value, __be32);
	__uint(max_entries, DSR_NODES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dsr_peer_cidrs SEC(".maps");

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
	__u8            tcp_flags; /* 0 for UDP */
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
	p->tcp_flags = 0;
	if (p->proto == IPPROTO_TCP) {
		__u8 *flags = hdr(skb, p->l4_off + 13, 1);

		if (!flags)
			return false;
		p->tcp_flags = *flags;
		p->syn_only = (*flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
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

/*
 * pick is the flow's backend; NULL, counted, when there is none (no
 * backend, or no Maglev table: a table missing is not "no backend").
 */
__inline struct addr_port *pick(struct nodeport_svc *svc, struct packet *p)
{
	struct addr_port *be;
	void *table;
	__u32 index;

	if (!svc->count || !svc->table_size) {
		count(CNT_DROP_NO_BACKEND);
		return NULL;
	}
	table = bpf_map_lookup_elem(&dsr_maglev, &svc->id);
	if (!table) {
		count(CNT_DROP_NO_TABLE);
		return NULL;
	}
	index = flow_hash(p) % svc->table_size;
	be = bpf_map_lookup_elem(table, &index);
	if (!be)
		count(CNT_DROP_NO_TABLE);
	return be;
}

/* lifetime is how long an entry in state st lives past its last packet. */
__inline __u64 lifetime(struct dsr_conf *c, __u8 proto, __u8 st)
{
	if (proto == IPPROTO_UDP)
		return c->udp_ns;
	if (st == ST_EST)
		return c->tcp_est_ns;
	if (st == ST_CLOSING)
		return c->tcp_close_ns;
	if (st == ST_RESET)
		return c->tcp_reset_ns;
	return c->tcp_syn_ns;
}

/*
 * next_state is a connection's state after a packet: established once the
 * backend sends something other than a SYN (its socket took the client's
 * ACK: a spoofed SYN never gets there), closing on FIN, reset on RST (nothing
 * more to carry: the shortest linger), new again on a client's SYN (the
 * tuple reused).
 */
__inline __u8 next_state(struct packet *p, __u8 st, bool from_backend)
{
	if (p->proto == IPPROTO_UDP)
		return from_backend ? ST_EST : st;
	if (p->tcp_flags & TCP_RST)
		return ST_RESET;
	if (!from_backend && p->syn_only)
		return ST_NEW;
	if (st == ST_RESET)
		return st;
	if (p->tcp_flags & TCP_FIN)
		return ST_CLOSING;
	if (from_backend && st == ST_NEW && !(p->tcp_flags & TCP_SYN))
		return ST_EST;
	return st;
}

/*
 * flow_find is k's live entry: in dsr_flows (*answered) or dsr_flows_new.
 * An expired one counts as absent.
 */
__inline struct flow_val *flow_find(struct flow_key *k, __u64 now, bool *answered)
{
	struct flow_val *v = bpf_map_lookup_elem(&dsr_flows, k);

	*answered = true;
	if (v && v->expires > now)
		return v;
	if (v)
		count(CNT_EXPIRED);
	*answered = false;
	v = bpf_map_lookup_elem(&dsr_flows_new, k);
	if (v && v->expires > now)
		return v;
	if (v)
		count(CNT_EXPIRED);
	return NULL;
}

/* flow_seen moves k's entry on by packet p; answered flows go to dsr_flows. */
__inline void flow_seen(struct dsr_conf *c, struct flow_key *k, struct flow_val *v, bool answered,
			struct packet *p, bool from_backend, __u64 now)
{
	__u8 st = next_state(p, v->state, from_backend);

	if (!answered && from_backend && st != ST_NEW) {
		struct flow_val nv = { .svc = v->svc, .state = st,
				       .expires = now + lifetime(c, p->proto, st) };

		if (bpf_map_update_elem(&dsr_flows, k, &nv, BPF_ANY) == 0) {
			bpf_map_delete_elem(&dsr_flows_new, k);
			count(CNT_ESTABLISHED);
			return;
		}
	}
	v->state = st;
	v->expires = now + lifetime(c, p->proto, st);
}

/*
 * record_flow notes a client's packet of a flow to a local backend, which
 * replies as svc: a flow it does not know yet (or whose service address
 * changed, or a SYN reusing an answered flow's tuple) starts unanswered.
 */
__inline void record_flow(struct dsr_conf *c, struct packet *p, __be32 backend_ip, __be16 backend_port,
			  __be32 svc_ip, __be16 svc_port)
{
	struct flow_key k = {
		.client_ip = p->saddr, .backend_ip = backend_ip,
		.client_port = p->l4.sport, .backend_port = backend_port, .proto = p->proto,
	};
	__u64 now = bpf_ktime_get_ns();
	struct flow_val *v;
	struct flow_val nv = { .svc = { .ip = svc_ip, .port = svc_port } };
	bool answered;

	v = flow_find(&k, now, &answered);
	if (v && v->svc.ip == svc_ip && v->svc.port == svc_port && !(answered && p->syn_only)) {
		flow_seen(c, &k, v, answered, p, false, now);
		return;
	}
	if (v && answered)
		bpf_map_delete_elem(&dsr_flows, &k);
	nv.state = next_state(p, ST_NEW, false);
	nv.expires = now + lifetime(c, p->proto, nv.state);
	bpf_map_update_elem(&dsr_flows_new, &k, &nv, BPF_ANY);
}

/* deliver hands a packet for a local pod to it, if the pod is here. */
__inline int deliver(struct __sk_buff *skb, __be32 daddr)
{
	struct endpoint_info *ep = endpoint_lookup(daddr);
	struct iphdr *ip = ipv4_hdr(skb);

	int rc;

	if (!ep || !ip)
		return BRAID_NEXT;
	rc = deliver_local(skb, ip, ep);
	if (rc == TC_ACT_SHOT)
		count(CNT_DROP_DELIVER);
	return rc;
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
		if (set_macs(skb, fib.dmac, fib.smac) < 0) {
			count(CNT_DROP_DELIVER);
			return TC_ACT_SHOT;
		}
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

/*
 * forward sends a rewritten packet towards the node that has its
 * destination: a router's hop, TTL one less (the caller checked ttl > 1).
 */
__inline int forward(struct __sk_buff *skb, struct dsr_conf *c, __u8 ttl)
{
	if (ipv4_dec_ttl(skb, ttl) < 0) {
		count(CNT_DROP_NAT);
		return TC_ACT_SHOT;
	}
	if (c->overlay_ifindex)
		return bpf_redirect(c->overlay_ifindex, 0); /* the tunnel's egress program keys it */
	return fib_redirect(skb);
}

/*
 * SNAT ports come from the range the plugin sets (snat_lo, snat_span),
 * outside the node's ephemeral ports and node ports: a reply to a port of
 * the node's own sockets is never taken for an SNAT flow's. A flow's
 * candidates are the client's own port (when in the range), then
 * SNAT_TRIES-1 ports from its hash; it takes the first one free or expired.
 */
__inline __be16 snat_candidate(struct dsr_conf *c, struct packet *p, __u32 h, int i)
{
	__u16 sport = bpf_ntohs(p->l4.sport);

	if (!c->snat_span)
		return 0;
	if (i == 0)
		return (__u16)(sport - c->snat_lo) < c->snat_span ? p->l4.sport : 0;
	return bpf_htons(c->snat_lo + (h + i * 7919) % c->snat_span);
}

/* snat_find is the live SNAT entry the client's flow holds, and its port. */
__inline struct snat_client *snat_find(struct packet *p, struct addr_port *be, __u64 now, __be16 *port)
{
	struct snat_fwd_key fk = { .client_ip = p->saddr, .svc_ip = p->daddr, .client_port = p->l4.sport,
				   .node_port = p->l4.dport, .proto = p->proto };
	struct snat_rev_key k = { .backend_ip = be->ip, .backend_port = be->port, .proto = p->proto };
	struct snat_client *have;
	__be16 *fwd = bpf_map_lookup_elem(&dsr_snat_fwd, &fk);

	if (!fwd)
		return NULL;
	k.snat_port = *fwd;
	have = bpf_map_lookup_elem(&dsr_snat, &k);
	if (!have || have->ip != p->saddr || have->port != p->l4.sport || have->node_port != p->l4.dport ||
	    have->svc_ip != p->daddr)
		return NULL;
	if (have->expires <= now) {
		count(CNT_EXPIRED);
		return NULL;
	}
	*port = k.snat_port;
	return have;
}

/* snat_port finds (or takes) the source port on this node for the client's flow. */
__inline int snat_port(struct dsr_conf *c, struct packet *p, struct addr_port *be, __be16 *port)
{
	struct snat_fwd_key fk = { .client_ip = p->saddr, .svc_ip = p->daddr, .client_port = p->l4.sport,
				   .node_port = p->l4.dport, .proto = p->proto };
	struct snat_client want = { .ip = p->saddr, .port = p->l4.sport, .node_port = p->l4.dport,
				    .svc_ip = p->daddr };
	struct snat_rev_key k = { .backend_ip = be->ip, .backend_port = be->port, .proto = p->proto };
	__u64 now = bpf_ktime_get_ns();
	struct snat_client *have = snat_find(p, be, now, port);
	__u32 h;

	if (have) {
		have->state = next_state(p, have->state, false);
		have->expires = now + lifetime(c, p->proto, have->state);
		return 0;
	}
	want.state = next_state(p, ST_NEW, false);
	want.expires = now + lifetime(c, p->proto, want.state);
	h = flow_hash(p);
	for (int i = 0; i < SNAT_TRIES; i++) {
		k.snat_port = snat_candidate(c, p, h, i);
		if (!k.snat_port)
			continue;
		have = bpf_map_lookup_elem(&dsr_snat, &k);
		if (have && have->expires > now)
			continue;
		if (have)
			count(CNT_EXPIRED);
		if (bpf_map_update_elem(&dsr_snat, &k, &want, have ? BPF_EXIST : BPF_NOEXIST) < 0)
			continue;
		bpf_map_update_elem(&dsr_snat_fwd, &fk, &k.snat_port, BPF_ANY);
		*port = k.snat_port;
		return 0;
	}
	return -1;
}

/* snat_known: the flow holds an SNAT port (it began with SNAT). */
__inline bool snat_known(struct packet *p, struct addr_port *be)
{
	__be16 port;

	return snat_find(p, be, bpf_ktime_get_ns(), &port) != NULL;
}

__inline int nodeport_snat(struct __sk_buff *skb, struct dsr_conf *c, struct packet *p, struct addr_port *be)
{
	__be16 sport;

	if (snat_port(c, p, be, &sport) < 0) {
		count(CNT_DROP_SNAT_PORTS);
		return TC_ACT_SHOT;
	}
	if (nat4(skb, false, p->proto, p->l4_off, p->daddr, be->ip, p->l4.dport, be->port) < 0 ||
	    nat4(skb, true, p->proto, p->l4_off, p->saddr, c->node_ip, p->l4.sport, sport) < 0) {
		count(CNT_DROP_NAT);
		return TC_ACT_SHOT;
	}
	count(CNT_SNAT_FORWARD);
	return forward(skb, c, p->ttl);
}

/* nodeport handles a packet addressed to this node's node port. */
__inline int nodeport(struct __sk_buff *skb, struct dsr_conf *c, struct packet *p, struct nodeport_svc *svc)
{
	struct addr_port *be = pick(svc, p);
	__be32 svc_ip = p->daddr;
	__be16 svc_port = p->l4.dport;
	bool fits, needs_opt;

	if (!be)
		return TC_ACT_SHOT; /* counted by pick */
	if (endpoint_lookup(be->ip)) {
		/* Local backend: the pod answers, its replies are rewritten on the way out. */
		record_flow(c, p, be->ip, be->port, svc_ip, svc_port);
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
	if (p->ttl <= 1) {
		count(CNT_DROP_TTL);
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
	return forward(skb, c, p->ttl);
}

/* is_external: ip:port is an External service's address. */
__inline bool is_external(__be32 ip, __be16 port, __u8 proto)
{
	struct external_key k = { .ip = ip, .port = port, .proto = proto };

	return bpf_map_lookup_elem(&dsr_externals, &k) != NULL;
}

/*
 * accept_opt records a flow announced by a DSR option. The option must name
 * a known node, or an External service's address, as the service address
 * (only nodes serve node ports and External addresses; pods'
 * options never leave their node, see from_container); in overlay mode the
 * caller has authenticated the tunnel already.
 */
__inline bool accept_opt(struct __sk_buff *skb, struct dsr_conf *c, struct packet *p)
{
	struct dsr_opt *opt;
	__be32 svc_ip;

	if (p->ihl != 7)
		return false;
	opt = hdr(skb, ETH_HLEN + sizeof(struct iphdr), sizeof(*opt));
	if (!opt || opt->type != DSR_OPT_TYPE || opt->len != DSR_OPT_LEN)
		return false;
	svc_ip = opt->addr;
	if (!(bpf_map_lookup_elem(&dsr_nodes, &svc_ip) || is_external(svc_ip, opt->port, p->proto)) ||
	    !endpoint_lookup(p->daddr)) {
		count(CNT_DROP_FORGED_OPT);
		return false;
	}
	record_flow(c, p, p->daddr, p->l4.dport, opt->addr, opt->port);
	count(CNT_OPT_ACCEPTED);
	return true;
}

/*
 * client_packet moves on the flow a client's packet belongs to, if dsr
 * knows it: true if it does.
 */
__inline bool client_packet(struct dsr_conf *c, struct packet *p)
{
	struct flow_key k = {
		.client_ip = p->saddr, .backend_ip = p->daddr,
		.client_port = p->l4.sport, .backend_port = p->l4.dport, .proto = p->proto,
	};
	__u64 now = bpf_ktime_get_ns();
	struct flow_val *v;
	bool answered;

	v = flow_find(&k, now, &answered);
	if (!v)
		return false;
	flow_seen(c, &k, v, answered, p, false, now);
	return true;
}

/*
 * snat_reply turns a backend's reply to this node back into one to the
 * client. The caller has made sure it comes from the backend's node.
 */
__inline int snat_reply(struct __sk_buff *skb, struct dsr_conf *c, struct packet *p)
{
	struct snat_rev_key k = {
		.backend_ip = p->saddr, .backend_port = p->l4.sport, .snat_port = p->l4.dport, .proto = p->proto,
	};
	struct snat_client *cl = bpf_map_lookup_elem(&dsr_snat, &k);
	struct snat_client client;
	__u64 now = bpf_ktime_get_ns();

	if (!cl)
		return BRAID_NEXT;
	if (cl->expires <= now) {
		count(CNT_EXPIRED);
		return BRAID_NEXT;
	}
	if (p->ttl <= 1) {
		count(CNT_DROP_TTL);
		return TC_ACT_SHOT;
	}
	cl->state = next_state(p, cl->state, true);
	cl->expires = now + lifetime(c, p->proto, cl->state);
	client = *cl;
	if (nat4(skb, true, p->proto, p->l4_off, p->saddr, client.svc_ip, p->l4.sport, client.node_port) < 0 ||
	    nat4(skb, false, p->proto, p->l4_off, p->daddr, client.ip, p->l4.dport, client.port) < 0) {
		count(CNT_DROP_NAT);
		return TC_ACT_SHOT;
	}
	count(CNT_SNAT_REPLY);
	if (ipv4_dec_ttl(skb, p->ttl) < 0) {
		count(CNT_DROP_NAT);
		return TC_ACT_SHOT;
	}
	/* From this node's own address now: the stack would not forward it. */
	return fib_redirect(skb);
}

/*
 * from_its_node: an SNAT reply comes from the node that has its source
 * (the backend; its pod CIDR in dsr_peer_cidrs, or a node itself): the
 * frame's source MAC is the one the fib sends that node's packets to. The
 * backend's node routes replies to this node's address over the underlay,
 * in VXLAN mode too. Anyone else on the underlay could write the reply's
 * addresses, not (short of spoofing MACs) that node's MAC.
 */
__inline bool from_its_node(struct __sk_buff *skb, struct dsr_conf *c, struct packet *p)
{
	struct peer_cidr key = { .prefixlen = 32, .ip = p->saddr };
	struct bpf_fib_lookup fib = {};
	__u8 dmac[ETH_ALEN] __attribute__((aligned(4)));
	__be32 node = p->saddr, *peer;
	struct ethhdr *eth;

	if (!bpf_map_lookup_elem(&dsr_nodes, &node)) {
		peer = bpf_map_lookup_elem(&dsr_peer_cidrs, &key);
		if (!peer)
			return false;
		node = *peer;
	}
	fib.family = AF_INET;
	fib.ipv4_src = c->node_ip;
	fib.ipv4_dst = node;
	fib.ifindex = skb->ingress_ifindex;
	if (bpf_fib_lookup(skb, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS ||
	    fib.ifindex != skb->ingress_ifindex)
		return false;
	mac_copy(dmac, fib.dmac); /* mac_equal reads words: aligned */
	eth = eth_hdr(skb);
	return eth && mac_equal(eth->h_source, dmac);
}

/*
 * not_parsed handles what parse refused at the node device: fragments to
 * this node are counted; a first fragment to a node port is refused (dsr
 * does not reassemble: the datagram cannot be balanced; the stack would
 * reassemble it for a socket that is not there). The rest goes on.
 */
__inline int not_parsed(struct __sk_buff *skb, struct dsr_conf *c)
{
	struct iphdr *ip = ipv4_hdr(skb);
	struct nodeport_key k = {};
	struct l4_ports *l4;

	if (!ip || ip->daddr != c->node_ip || !(ip->frag_off & bpf_htons(0x3fff)))
		return BRAID_NEXT;
	if (!(ip->frag_off & bpf_htons(0x1fff)) &&
	    (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP)) {
		k.proto = ip->protocol;
		l4 = hdr(skb, ETH_HLEN + ip->ihl * 4, sizeof(*l4));
		if (l4) {
			k.port = l4->dport;
			if (bpf_map_lookup_elem(&dsr_nodeports, &k)) {
				count(CNT_DROP_FRAG_NODEPORT);
				return TC_ACT_SHOT;
			}
		}
	}
	count(CNT_FRAG_PASSED);
	return BRAID_NEXT;
}

SEC("tc")
int from_netdev(struct __sk_buff *skb)
{
	struct dsr_conf *c = conf();
	struct nodeport_svc *svc;
	struct packet p;

	if (!c)
		return BRAID_NEXT;
	if (!parse(skb, &p))
		return not_parsed(skb, c);
	if (p.daddr == c->node_ip) {
		struct nodeport_key k = { .port = p.l4.dport, .proto = p.proto };

		svc = bpf_map_lookup_elem(&dsr_nodeports, &k);
		if (svc)
			return nodeport(skb, c, &p, svc);
		/* SNAT replies: from the backend's node only. */
		if (!from_its_node(skb, c, &p)) {
			struct snat_rev_key rk = { .backend_ip = p.saddr, .backend_port = p.l4.sport,
						   .snat_port = p.l4.dport, .proto = p.proto };

			if (bpf_map_lookup_elem(&dsr_snat, &rk)) {
				count(CNT_DROP_TUNNEL);
				return TC_ACT_SHOT;
			}
			return BRAID_NEXT;
		}
		return snat_reply(skb, c, &p);
	}
	{
		struct external_key ek = { .ip = p.daddr, .port = p.l4.dport, .proto = p.proto };

		svc = bpf_map_lookup_elem(&dsr_externals, &ek);
		if (svc)
			return nodeport(skb, c, &p, svc);
	}
	if (p.ihl == 7 && accept_opt(skb, c, &p))
		return deliver(skb, p.daddr);
	/* A client's FIN or RST closes its flow (the stack delivers it). */
	if (p.tcp_flags & (TCP_FIN | TCP_RST))
		client_packet(c, &p);
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
	/*
	 * The tunnel first: nothing below may act on a packet that a pod or an
	 * underlay host wrapped and sent to this node's VXLAN port. What is
	 * not from a node with the overlay's VNI is the tunnel program's to
	 * drop (it checks the same); dsr only counts it.
	 */
	if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0) < 0) {
		count(CNT_DROP_TUNNEL);
		return TC_ACT_SHOT;
	}
	sender = bpf_htonl(key.remote_ipv4);
	if (key.tunnel_id != c->vni || !bpf_map_lookup_elem(&dsr_nodes, &sender)) {
		count(CNT_DROP_TUNNEL);
		return TC_ACT_SHOT;
	}
	if (p.daddr == c->node_ip)
		return snat_reply(skb, c, &p);
	/*
	 * The tunnel only accepts inner sources of the sending node; a DSR flow's
	 * source is the client, so dsr delivers the flow's packets itself: the
	 * first by its option, the rest because the flow is known.
	 */
	if ((p.ihl == 7 && accept_opt(skb, c, &p)) || client_packet(c, &p))
		return deliver(skb, p.daddr);
	return BRAID_NEXT;
}

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	struct dsr_conf *c = conf();
	struct flow_val *v;
	struct packet p;
	struct addr_port addr;
	struct flow_key k = {};
	struct iphdr *ip = ipv4_hdr(skb);
	bool answered;

	if (ip && ip->ihl > 5) {
		/*
		 * Only nodes speak DSR; a pod that sends an option is forging
		 * one, whatever its protocol. Options that cannot be read (the
		 * lengths do not add up) cannot be ruled out: dropped too.
		 */
		__u8 *type = hdr(skb, ETH_HLEN + sizeof(struct iphdr), 1);

		if (!type || !ipv4_hdr_checked(skb)) {
			count(CNT_DROP_PARSE);
			return TC_ACT_SHOT;
		}
		if (*type == DSR_OPT_TYPE) {
			count(CNT_DROP_FORGED_OPT);
			return TC_ACT_SHOT;
		}
	}
	if (!parse(skb, &p))
		return BRAID_NEXT;
	if (!c)
		return BRAID_NEXT;
	k.client_ip = p.daddr;
	k.backend_ip = p.saddr;
	k.client_port = p.l4.dport;
	k.backend_port = p.l4.sport;
	k.proto = p.proto;
	v = flow_find(&k, bpf_ktime_get_ns(), &answered);
	if (!v)
		return BRAID_NEXT;
	addr = v->svc;
	flow_seen(c, &k, v, answered, &p, true, bpf_ktime_get_ns());
	if (nat4(skb, true, p.proto, p.l4_off, p.saddr, addr.ip, p.l4.sport, addr.port) < 0) {
		count(CNT_DROP_NAT);
		return TC_ACT_SHOT;
	}
	count(CNT_REPLY_REWRITE);
	/*
	 * A reply from this node's own address (a backend here, reached through
	 * this node's node port) is forwarded here: the stack would drop it as
	 * a martian; so is one from an External address (no route back to it
	 * through the pod's veth: reverse-path filters). Replies from another
	 * node's address go on.
	 */
	if (addr.ip == c->node_ip || is_external(addr.ip, addr.port, p.proto))
		return fib_redirect(skb);
	return BRAID_NEXT;
}

char __license[] SEC("license") = "Dual BSD/GPL";
