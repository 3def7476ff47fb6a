// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * Not a program: compiles one plugin's counter enum (COUNTERS_H, given with
 * -D by the plugin's gen.go) into BTF, so that bpf2go -type writes its Go
 * side into plugins/counters. The plugin's own object does not carry the
 * enum's type (an enum used only through its constants leaves no BTF), and
 * a global in it would add a map to load.
 */

#include "braid.h"
#include COUNTERS_H

/* Only here to put enum counter in BTF; never loaded. */
enum counter *counter_type __attribute__((unused));

char __license[] SEC("license") = "Dual BSD/GPL";
