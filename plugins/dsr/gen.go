package main

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type nodeport_key -type nodeport_svc -type flow_key -type addr_port -type dsr_conf -type flow_val -type snat_rev_key -type snat_client -type snat_fwd_key -type peer_cidr -type external_key dsr ../../bpf/dsr.c -- -I../../bpf/include

// The counter enum's Go side, in the importable package plugins/counters.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -DCOUNTERS_H=<dsr_counters.h>" -target bpfel -type counter -output-dir ../counters -go-package counters DSR ../../bpf/counters.c -- -I../../bpf/include
