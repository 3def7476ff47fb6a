package main

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type lb_service_key -type lb_service -type lb_backend_key -type lb_backend -type lb_revnat_key -type lb_revnat_value -type lb_conf -type lb_nodeport_key -type lb_affinity_key -type lb_affinity_value sockLb ../../bpf/sock_lb.c -- -I../../bpf/include

// The counter enum's Go side, in the importable package plugins/counters.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -DCOUNTERS_H=<sock_lb_counters.h>" -target bpfel -type counter -output-dir ../counters -go-package counters SockLB ../../bpf/counters.c -- -I../../bpf/include
