package main

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type tunnel_key -type tunnel_endpoint -type tunnel_conf vxlanTunnel ../../bpf/vxlan_tunnel.c -- -I../../bpf/include
