package main

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type endpoint_info vethEbpf ../../bpf/veth_ebpf.c -- -I../../bpf/include
