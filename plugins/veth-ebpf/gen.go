package main

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type endpoint_info vethEbpf ../../bpf/veth_ebpf.c -- -I../../bpf/include

// The counter enum's Go side, in the importable package plugins/counters.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -DCOUNTERS_H=<veth_ebpf_counters.h>" -target bpfel -type counter -output-dir ../counters -go-package counters VethEbpf ../../bpf/counters.c -- -I../../bpf/include
