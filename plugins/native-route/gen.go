package main

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type native_conf -type peer_key nativeRoute ../../bpf/native_route.c -- -I../../bpf/include

// The counter enum's Go side, in the importable package plugins/counters.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -DCOUNTERS_H=<native_route_counters.h>" -target bpfel -type counter -output-dir ../counters -go-package counters NativeRoute ../../bpf/counters.c -- -I../../bpf/include
