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
#define LB_SERVICES_MAX (1 << 16)
#define LB_BACKENDS_MAX (1 << 20)
#define LB_REVNAT_MAX   (1 << 18)

struct lb_service_key {
	__u32 vip;   /* network byte order */
	__u16 port;  /* network byte order */
	__u8  proto; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8  pad;
};

struct lb_service {
	__u32 id;
	__u32 count; /* backends in slots 0..count-1 */
	__u32 flags; /* reserved */
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

/* Backend -> VIP per socket, for recvmsg and getpeername. LRU: sockets end silently. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_revnat_key);
	__type(value, struct lb_revnat_value);
	__uint(max_entries, LB_REVNAT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_conf);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_settings SEC(".maps");

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
 * balance rewrites a destination that is a service to one of its backends
 * (with hostNamespaceOnly, only for the node netns's sockets: the others'
 * connects to a service are counted as skipped and left alone).
 * It returns 1 to let the call proceed, 0 to fail it (ECONNREFUSED).
 */
__inline int balance(struct bpf_sock_addr *ctx, __u32 counter)
{
	struct lb_service_key key = {
		.vip = ctx->user_ip4,
		.port = (__u16)ctx->user_port,
		.proto = (__u8)ctx->protocol,
	};
	struct lb_backend_key bkey = {};
	struct lb_revnat_key rkey = {};
	struct lb_revnat_value rval = {};
	struct lb_service *svc;
	struct lb_backend *be;

	svc = bpf_map_lookup_elem(&lb_services, &key);
	if (!svc)
		return 1;
	if (!lb_applies(ctx))
		return 1;
	if (svc->count == 0) {
		count(CNT_REFUSED_EMPTY);
		bpf_set_retval(-ECONNREFUSED);
		return 0;
	}
	bkey.id = svc->id;
	bkey.slot = bpf_get_prandom_u32() % svc->count;
	be = bpf_map_lookup_elem(&lb_backends, &bkey);
	if (!be) {
		count(CNT_BACKEND_MISSING);
		bpf_set_retval(-ECONNREFUSED);
		return 0;
	}
	rkey.cookie = bpf_get_socket_cookie(ctx);
	rkey.ip = be->ip;
	rkey.port = be->port;
	rval.vip = key.vip;
	rval.port = key.port;
	bpf_map_update_elem(&lb_revnat, &rkey, &rval, BPF_ANY);

	ctx->user_ip4 = be->ip;
	ctx->user_port = be->port;
	count(counter);
	return 1;
}

/* reverse shows the VIP where the socket would see a backend. */
__inline int reverse(struct bpf_sock_addr *ctx)
{
	struct lb_revnat_key rkey = {
		.cookie = bpf_get_socket_cookie(ctx),
		.ip = ctx->user_ip4,
		.port = (__u16)ctx->user_port,
	};
	struct lb_revnat_value *rval = bpf_map_lookup_elem(&lb_revnat, &rkey);

	if (rval) {
		ctx->user_ip4 = rval->vip;
		ctx->user_port = rval->port;
		count(CNT_REVNAT);
	}
	return 1;
}

SEC("cgroup/connect4")
int sock_connect4(struct bpf_sock_addr *ctx)
{
	return balance(ctx, CNT_CONNECT_LB);
}

SEC("cgroup/sendmsg4")
int sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	return balance(ctx, CNT_SENDMSG_LB);
}

SEC("cgroup/recvmsg4")
int sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	return reverse(ctx);
}

SEC("cgroup/getpeername4")
int sock_getpeername4(struct bpf_sock_addr *ctx)
{
	return reverse(ctx);
}

char __license[] SEC("license") = "Dual BSD/GPL";
