package main

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type tunnel_key -type tunnel_endpoint -type tunnel_conf vxlanTunnel ../../bpf/vxlan_tunnel.c -- -I../../bpf/include

// The counter enum's Go side, in the importable package plugins/counters.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -DCOUNTERS_H=<vxlan_tunnel_counters.h>" -target bpfel -type counter -output-dir ../counters -go-package counters VxlanTunnel ../../bpf/counters.c -- -I../../bpf/include
