/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * dsr's counter reasons: the index of each counter in its counters map
 * (counters.h). The one definition: bpf2go -type generates the Go side
 * (plugins/counters), and a counter's name (metric label, braid status) is
 * its value's name without CNT_, in lower case. Append new reasons at the
 * end (keep the values dense from 0, below COUNTERS_MAX) and run
 * go generate ./plugins/dsr.
 */
#pragma once

enum counter {
	CNT_LOCAL_DELIVER   = 0,  /* node port, backend on this node: DNAT and delivered to the pod */
	CNT_DSR_FORWARD     = 1,  /* node port, backend on another node: DNAT and forwarded for DSR */
	CNT_DSR_OPT_ADDED   = 2,  /* ...and the 0x9a option inserted (TCP SYN, every UDP datagram) */
	CNT_SNAT_FORWARD    = 3,  /* node port forwarded with SNAT (mode snat, or a fallback) */
	CNT_SNAT_FALLBACK   = 4,  /* DSR impossible (options present, or the option would outgrow the MTU): SNAT instead */
	CNT_OPT_ACCEPTED    = 5,  /* a trusted node's option accepted: flow recorded, packet delivered */
	CNT_REPLY_REWRITE   = 6,  /* a backend pod's reply given the service address as its source */
	CNT_SNAT_REPLY      = 7,  /* a reply to an SNATed flow turned back towards the client */
	CNT_DROP_NO_BACKEND = 8,  /* node port with no (local, under Local policy) backend */
	CNT_DROP_FORGED_OPT = 9,  /* option from a pod, or naming an unknown node or a non-local destination */
	CNT_DROP_NAT        = 10, /* a rewrite (NAT, option insertion) failed */
	CNT_DROP_SNAT_PORTS = 11, /* no free SNAT port for the flow */
	CNT_PASS            = 12, /* from_netdev: not dsr's, passed on */
	CNT_DROP_TUNNEL     = 13, /* tunnel packet from an unknown node or with another VNI; SNAT reply not from its backend's node */
	CNT_EXPIRED         = 14, /* an expired flow or SNAT entry met: treated as absent (and replaced) */
	CNT_ESTABLISHED     = 15, /* a flow answered by its backend: moved to the established flows */
	CNT_DROP_NO_TABLE   = 16, /* node port with backends but no Maglev table (a sync in progress or broken) */
	CNT_DROP_TTL        = 17, /* node port packet to forward with TTL 1 */
	CNT_DROP_DELIVER    = 18, /* rewriting MACs or the redirect to a pod or device failed */
	CNT_DROP_PARSE      = 19, /* a pod's packet with IP options dsr cannot read: a forged option cannot be ruled out */
	CNT_FRAG_PASSED     = 20, /* a fragment not known to be a node port's (later fragments carry no ports): to the stack */
	CNT_DROP_FRAG_NODEPORT = 21, /* a first fragment to a node port: dsr does not reassemble, refused */
};
