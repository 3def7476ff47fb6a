package main

import "github.com/braid-cni/braid/plugins/counters"

// counterNames name the indexes of the counters map: enum counter of
// bpf/include/dsr_counters.h, read through plugins/counters ("drop" marks
// drops, for braid agent's metrics; `braid status` shows them).
var counterNames = counters.Names("dsr")
