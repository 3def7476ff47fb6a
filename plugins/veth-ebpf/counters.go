package main

// counterNames are the indexes of the counters map, in the order of the
// enum in bpf/veth_ebpf.c ("drop" marks drops, for braid agent's metrics).
var counterNames = []string{
	"redirect_peer", "pass_next", "drop_spoof_ip", "drop_spoof_mac", "drop_spoof_arp",
	"drop_proto", "drop_malformed", "drop_not_ours", "to_container",
}
