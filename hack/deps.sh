#!/usr/bin/env bash
# Installs the system tools braid's targets need, when any is missing.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have clang    || need+=(clang)
have llvm-strip || need+=(llvm)
[ -e /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
have bpftool  || need+=(bpftool)
have ip       || need+=(iproute2)
have nsenter  || need+=(util-linux)
have ping     || need+=(iputils-ping)
have iperf3   || need+=(iperf3)
have sockperf || need+=(sockperf)
have tcpdump  || need+=(tcpdump)
have socat    || need+=(socat)     # make demo: the pods' servers and clients
have jq       || need+=(jq)        # make demo: per-node conflists
have iptables || need+=(iptables)  # bench: the kube-proxy-style baselines
have nft      || need+=(nftables)  # bench/kubeproxy: kube-proxy --proxy-mode nftables runs nft
have protoc   || need+=(protobuf-compiler)
have etcd     || need+=(etcd-server)
# integration/podman: podman 4 (CNI backend) with runc (crun fails on a
# hybrid cgroup layout); its busybox image is built from busybox-static,
# which the suite downloads itself.
have podman   || need+=(podman)
have runc     || need+=(runc)

if [ ${#need[@]} -gt 0 ]; then
	echo "installing: ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
