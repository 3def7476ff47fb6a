/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Per-plugin packet counters: a per-CPU array indexed by a plugin-defined
 * reason. Each plugin's object gets its own copy, pinned under the plugin's
 * own bpffs folder; the Go side sums the CPUs.
 */
#pragma once

#include "braid.h"

#define COUNTERS_MAX 32

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, COUNTERS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps");

__inline void count(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &reason);

	if (c)
		*c += 1;
}
