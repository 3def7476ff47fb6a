/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * sock-lb's counter reasons: the index of each counter in its counters map
 * (counters.h). The one definition: bpf2go -type generates the Go side
 * (plugins/counters), and a counter's name (metric label, braid status) is
 * its value's name without CNT_, in lower case. Append new reasons at the
 * end (keep the values dense from 0, below COUNTERS_MAX) and run
 * go generate ./plugins/sock-lb.
 */
#pragma once

enum counter {
	CNT_CONNECT_LB      = 0, /* connect() calls rewritten to a backend */
	CNT_SENDMSG_LB      = 1, /* unconnected UDP datagrams rewritten to a backend */
	CNT_REFUSED_EMPTY   = 2, /* connects and sends to a service without backends: ECONNREFUSED */
	CNT_REVNAT          = 3, /* recvmsg/getpeername calls shown the VIP */
	CNT_SKIPPED_NETNS   = 4, /* connects and sends left alone by hostNamespaceOnly (another netns's) */
	CNT_BACKEND_MISSING = 5, /* a pick of a slot absent from the backend map (the maps disagree): ECONNREFUSED */
	CNT_NODEPORT_LB     = 6, /* of those balanced, the ones to <a node IP>:<nodePort> */
	CNT_MAPPED_LB       = 7, /* of those balanced, IPv6 sockets' connects to a v4-mapped address (their unconnected sendto() runs the IPv4 hook) */
	CNT_AFFINITY_HIT    = 8, /* picks that kept the client's backend (within its affinity timeout) */
	CNT_AFFINITY_STALE  = 9, /* affinity entries whose backend left the service: picked anew */
};
