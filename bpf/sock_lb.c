// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * sock-lb: ClusterIP load balancing in the socket layer. A connect() (or an
 * unconnected UDP sendmsg()) to a service VIP:port is rewritten to a backend
 * before any packet exists, so no packet carries the VIP and nothing is
 * translated per packet. recvmsg() and getpeername() translate back, so the
 * application only ever sees the VIP.
 *
 * Attached at a cgroup v2 root (cgroupRoot): every socket of every process
 * below it is balanced, or with hostNamespaceOnly only the sockets of the
 * node's own network namespace.
 */

#include "braid.h"
#include "counters.h"
#include "sock_lb_counters.h"

#define ECONNREFUSED 111
#define NSEC_PER_SEC 1000000000ULL

#define LB_SERVICES_MAX  (1 << 16) /* store.MaxServices */
#define LB_BACKENDS_MAX  (1 << 20) /* store.MaxTotalBackends */
#define LB_REVNAT_MAX    (1 << 18)
#define LB_NODEPORTS_MAX 4096      /* store.MaxNodePorts */
#define LB_NODEIPS_MAX   4096      /* this node and its peers (dsr_nodes, tunnel_peers) */
#define LB_AFFINITY_MAX  (1 << 16)

struct lb_service_key {
	__u32 vip;   /* network byte order */
	__u16 port;  /* network byte order */
	__u8  proto; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8  pad;
};

struct lb_service {
	__u32 id;
	__u32 count;    /* backends in slots 0..count-1 */
	__u32 affinity; /* seconds a client keeps its backend; 0: none */
};

struct lb_backend_key {
	__u32 id;
	__u32 slot;
};

struct lb_backend {
	__u32 ip;   /* network byte order */
	__u16 port; /* network byte order */
	__u16 pad;
};

struct lb_nodeport_key {
	__u16 port;  /* network byte order */
	__u8  proto;
	__u8  pad;
};

struct lb_revnat_key {
	__u64 cookie; /* the socket's */
	__u32 ip;     /* backend */
	__u16 port;
	__u16 pad;
};

struct lb_revnat_value {
	__u32 vip;
	__u16 port;
	__u16 pad;
};

/* A client is its network namespace: one pod (one pod IP), or the node. */
struct lb_affinity_key {
	__u64 netns_cookie;
	__u32 id; /* service */
	__u32 pad;
};

struct lb_affinity_value {
	__u64 last_ns; /* bpf_ktime_get_ns() of the client's last pick */
	__u32 ip;      /* the backend, to tell a slot that changed hands */
	__u16 port;
	__u16 slot;
};

struct lb_conf {
	__u64 host_netns_cookie;
	__u32 host_ns_only;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_service_key);
	__type(value, struct lb_service);
	__uint(max_entries, LB_SERVICES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_backend_key);
	__type(value, struct lb_backend);
	__uint(max_entries, LB_BACKENDS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_backends SEC(".maps");

/* NodePort services by node port: the same value (id, count) as the
 * service's lb_services entry, for <any node IP>:<nodePort>. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_nodeport_key);
	__type(value, struct lb_service);
	__uint(max_entries, LB_NODEPORTS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_nodeports SEC(".maps");

/* The cluster's node IPs (this node's and its peers'), network order. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, LB_NODEIPS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_nodeips SEC(".maps");

/* Backend -> VIP per socket, for recvmsg and getpeername. LRU: sockets end silently. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_revnat_key);
	__type(value, struct lb_revnat_value);
	__uint(max_entries, LB_REVNAT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_revnat SEC(".maps");

/* Session affinity: client -> backend, valid for the service's timeout since
 * last_ns (checked at use; the plugin's sync also sweeps expired entries). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_affinity_key);
	__type(value, struct lb_affinity_value);
	__uint(max_entries, LB_AFFINITY_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_conf);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_settings SEC(".maps");

/* The destination a hook is asked about, family aside. */
struct lb_addr {
	__u32 ip;   /* network byte order */
	__u16 port; /* network byte order */
};

__inline bool lb_applies(struct bpf_sock_addr *ctx)
{
	__u32 zero = 0;
	struct lb_conf *c = bpf_map_lookup_elem(&lb_settings, &zero);

	if (!c || !c->host_ns_only)
		return true;
	if (bpf_get_netns_cookie(ctx) == c->host_netns_cookie)
		return true;
	count(CNT_SKIPPED_NETNS);
	return false;
}

/*
 * lookup_service finds the service at dst: a service address, or a node
 * port at any node's IP (this node's or a peer's), translated here so that
 * in-cluster clients reach a backend directly, whatever the node.
 */
__inline struct lb_service *lookup_service(const struct lb_addr *dst, __u8 proto, bool *nodeport)
{
	struct lb_service_key key = { .vip = dst->ip, .port = dst->port, .proto = proto };
	struct lb_nodeport_key nkey = { .port = dst->port, .proto = proto };
	struct lb_service *svc = bpf_map_lookup_elem(&lb_services, &key);

	if (svc)
		return svc;
	if (!bpf_map_lookup_elem(&lb_nodeips, &key.vip))
		return NULL;
	*nodeport = true;
	return bpf_map_lookup_elem(&lb_nodeports, &nkey);
}

/* A service's backends at most (store.MaxBackends): bounds the slot search. */
#define LB_SERVICE_BACKENDS_MAX 256

/*
 * find_slot looks for the backend aff recorded among the service's slots:
 * a removal before it in the list moves it to another slot, and the client
 * keeps it. Only run when the recorded slot no longer holds it.
 */
__inline struct lb_backend *find_slot(struct lb_service *svc, struct lb_affinity_value *aff)
{
	struct lb_backend_key bkey = { .id = svc->id };
	struct lb_backend *be;

	for (__u32 i = 0; i < LB_SERVICE_BACKENDS_MAX && i < svc->count; i++) {
		bkey.slot = i;
		be = bpf_map_lookup_elem(&lb_backends, &bkey);
		if (be && be->ip == aff->ip && be->port == aff->port) {
			aff->slot = (__u16)i;
			return be;
		}
	}
	return NULL;
}

/*
 * sticky returns the backend the client was given within the service's
 * affinity timeout, refreshing its time, or NULL. An entry whose backend
 * left the service is stale: counted, and the client is picked anew.
 */
__inline struct lb_backend *sticky(struct lb_service *svc, struct lb_affinity_key *akey, __u64 now)
{
	struct lb_affinity_value *aff = bpf_map_lookup_elem(&lb_affinity, akey);
	struct lb_backend_key bkey = { .id = svc->id };
	struct lb_backend *be = NULL;

	if (!aff || now - aff->last_ns > (__u64)svc->affinity * NSEC_PER_SEC)
		return NULL;
	bkey.slot = aff->slot;
	if (aff->slot < svc->count)
		be = bpf_map_lookup_elem(&lb_backends, &bkey);
	if (!be || be->ip != aff->ip || be->port != aff->port)
		be = find_slot(svc, aff);
	if (!be) {
		count(CNT_AFFINITY_STALE);
		return NULL;
	}
	aff->last_ns = now;
	count(CNT_AFFINITY_HIT);
	return be;
}

/* pick chooses a backend: the client's under affinity, else a random slot. */
__inline struct lb_backend *pick(struct bpf_sock_addr *ctx, struct lb_service *svc)
{
	struct lb_affinity_key akey = { .id = svc->id };
	struct lb_backend_key bkey = { .id = svc->id };
	struct lb_affinity_value aff = {};
	struct lb_backend *be;
	__u64 now = 0;

	if (svc->affinity) {
		akey.netns_cookie = bpf_get_netns_cookie(ctx);
		now = bpf_ktime_get_ns();
		be = sticky(svc, &akey, now);
		if (be)
			return be;
	}
	bkey.slot = bpf_get_prandom_u32() % svc->count;
	be = bpf_map_lookup_elem(&lb_backends, &bkey);
	if (!be || !svc->affinity)
		return be;
	aff.last_ns = now;
	aff.ip = be->ip;
	aff.port = be->port;
	aff.slot = (__u16)bkey.slot;
	bpf_map_update_elem(&lb_affinity, &akey, &aff, BPF_ANY);
	return be;
}

/*
 * balance rewrites dst when it is a service to one of its backends (with
 * hostNamespaceOnly, only for the node netns's sockets: the others' connects
 * to a service are counted as skipped and left alone).
 * It returns 1 to let the call proceed, 0 to fail it (ECONNREFUSED).
 */
__inline int balance(struct bpf_sock_addr *ctx, struct lb_addr *dst, __u32 counter)
{
	struct lb_revnat_key rkey = {};
	struct lb_revnat_value rval = {};
	bool nodeport = false;
	struct lb_service *svc;
	struct lb_backend *be;

	svc = lookup_service(dst, (__u8)ctx->protocol, &nodeport);
	if (!svc)
		return 1;
	if (!lb_applies(ctx))
		return 1;
	if (svc->count == 0) {
		count(CNT_REFUSED_EMPTY);
		bpf_set_retval(-ECONNREFUSED);
		return 0;
	}
	be = pick(ctx, svc);
	if (!be) {
		count(CNT_BACKEND_MISSING);
		bpf_set_retval(-ECONNREFUSED);
		return 0;
	}
	rkey.cookie = bpf_get_socket_cookie(ctx);
	rkey.ip = be->ip;
	rkey.port = be->port;
	rval.vip = dst->ip;
	rval.port = dst->port;
	bpf_map_update_elem(&lb_revnat, &rkey, &rval, BPF_ANY);
	dst->ip = be->ip;
	dst->port = be->port;
	count(counter);
	if (nodeport)
		count(CNT_NODEPORT_LB);
	return 1;
}

/* reverse shows the VIP where the socket would see a backend. */
__inline void reverse(struct bpf_sock_addr *ctx, struct lb_addr *src)
{
	struct lb_revnat_key rkey = {
		.cookie = bpf_get_socket_cookie(ctx),
		.ip = src->ip,
		.port = src->port,
	};
	struct lb_revnat_value *rval = bpf_map_lookup_elem(&lb_revnat, &rkey);

	if (rval) {
		src->ip = rval->vip;
		src->port = rval->port;
		count(CNT_REVNAT);
	}
}

__inline int balance4(struct bpf_sock_addr *ctx, __u32 counter)
{
	struct lb_addr a = { .ip = ctx->user_ip4, .port = (__u16)ctx->user_port };
	int ret = balance(ctx, &a, counter);

	if (a.ip != ctx->user_ip4 || a.port != (__u16)ctx->user_port) {
		ctx->user_ip4 = a.ip;
		ctx->user_port = a.port;
	}
	return ret;
}

__inline int reverse4(struct bpf_sock_addr *ctx)
{
	struct lb_addr a = { .ip = ctx->user_ip4, .port = (__u16)ctx->user_port };

	reverse(ctx, &a);
	ctx->user_ip4 = a.ip;
	ctx->user_port = a.port;
	return 1;
}

/*
 * An IPv6 socket (a dual-stack one: Java's, .NET's, Go's "udp" with no
 * address) reaches IPv4 services at v4-mapped addresses, ::ffff:a.b.c.d.
 * Those are balanced exactly as the IPv4 hooks do, in the low word;
 * native IPv6 destinations pass untouched.
 */
__inline bool v4_mapped(struct bpf_sock_addr *ctx)
{
	return ctx->user_ip6[0] == 0 && ctx->user_ip6[1] == 0 &&
	       ctx->user_ip6[2] == bpf_htonl(0x0000ffff);
}

__inline int balance6(struct bpf_sock_addr *ctx, __u32 counter)
{
	struct lb_addr a;
	int ret;

	if (!v4_mapped(ctx))
		return 1;
	a.ip = ctx->user_ip6[3];
	a.port = (__u16)ctx->user_port;
	ret = balance(ctx, &a, counter);
	if (a.ip != ctx->user_ip6[3] || a.port != (__u16)ctx->user_port) {
		ctx->user_ip6[3] = a.ip;
		ctx->user_port = a.port;
		count(CNT_MAPPED_LB);
	}
	return ret;
}

__inline int reverse6(struct bpf_sock_addr *ctx)
{
	struct lb_addr a;

	if (!v4_mapped(ctx))
		return 1;
	a.ip = ctx->user_ip6[3];
	a.port = (__u16)ctx->user_port;
	reverse(ctx, &a);
	ctx->user_ip6[3] = a.ip;
	ctx->user_port = a.port;
	return 1;
}

SEC("cgroup/connect4")
int sock_connect4(struct bpf_sock_addr *ctx)
{
	return balance4(ctx, CNT_CONNECT_LB);
}

SEC("cgroup/sendmsg4")
int sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	return balance4(ctx, CNT_SENDMSG_LB);
}

SEC("cgroup/recvmsg4")
int sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	return reverse4(ctx);
}

SEC("cgroup/getpeername4")
int sock_getpeername4(struct bpf_sock_addr *ctx)
{
	return reverse4(ctx);
}

SEC("cgroup/connect6")
int sock_connect6(struct bpf_sock_addr *ctx)
{
	return balance6(ctx, CNT_CONNECT_LB);
}

SEC("cgroup/sendmsg6")
int sock_sendmsg6(struct bpf_sock_addr *ctx)
{
	return balance6(ctx, CNT_SENDMSG_LB);
}

SEC("cgroup/recvmsg6")
int sock_recvmsg6(struct bpf_sock_addr *ctx)
{
	return reverse6(ctx);
}

SEC("cgroup/getpeername6")
int sock_getpeername6(struct bpf_sock_addr *ctx)
{
	return reverse6(ctx);
}

char __license[] SEC("license") = "Dual BSD/GPL";
