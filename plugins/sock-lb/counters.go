package main

// Counter indices of the counters map: the enum in bpf/sock_lb.c, in order
// (counters_test.go checks the two agree).
const (
	// cntConnectLB counts connect() calls rewritten to a backend.
	cntConnectLB = iota
	// cntSendmsgLB counts unconnected UDP datagrams rewritten to a backend.
	cntSendmsgLB
	// cntRefusedEmpty counts connects and sends to a service without
	// backends, failed with ECONNREFUSED.
	cntRefusedEmpty
	// cntRevNAT counts recvmsg/getpeername calls shown the VIP.
	cntRevNAT
	// cntSkippedNetns counts connects and sends to a service left alone by
	// hostNamespaceOnly (another netns's).
	cntSkippedNetns
	// cntBackendMissing counts picks of a slot absent from the backend map
	// (the maps disagree; failed with ECONNREFUSED).
	cntBackendMissing
)

// counterNames are the indexes of the counters map, in the order of the
// enum in bpf/sock_lb.c ("drop" marks drops, for braid agent's metrics).
var counterNames = []string{
	"connect_lb", "sendmsg_lb", "refused_empty", "revnat", "skipped_netns", "backend_missing",
}
