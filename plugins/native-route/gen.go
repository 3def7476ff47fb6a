package main

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type native_conf nativeRoute ../../bpf/native_route.c -- -I../../bpf/include
