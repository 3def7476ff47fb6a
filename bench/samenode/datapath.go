package main

import "github.com/braid-cni/braid/bench/internal/kit"

// datapath is one way for two pods on the same node to talk: the client
// pod connects to the server pod.
type datapath struct {
	key, title       string
	client, server   string // pod netns names
	clientIP         string
	serverIP         string
	counters         string // braid: the pinned counters map; "" otherwise
	redirect, passed uint64 // braid: counter deltas over all measurements
}

// pair is d's two pods with the client pinned to clientCPU and the server
// to serverCPU.
func (d *datapath) pair(clientCPU, serverCPU string) kit.Pair {
	return kit.Pair{
		Client:   kit.In{NS: d.client, CPUs: clientCPU},
		Server:   kit.In{NS: d.server, CPUs: serverCPU},
		ServerIP: d.serverIP,
	}
}
