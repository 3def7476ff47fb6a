package main

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type nodeport_key -type nodeport_svc -type flow_key -type addr_port -type dsr_conf dsr ../../bpf/dsr.c -- -I../../bpf/include
