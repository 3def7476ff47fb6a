#!/usr/bin/env bash
# Builds the real Kubernetes binaries (from hack/k8s, one pinned release) into
# a cache outside the checkout, once: later runs find them and return at once.
#   hack/k8s-build.sh [command...]   default: every command the suites use
# Prints the cache's bin folder. BRAID_CACHE moves the cache (/var/cache/braid).
set -euo pipefail
cd "$(dirname "$0")/k8s"
release=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' go.mod)
bin=${BRAID_CACHE:-/var/cache/braid}/k8s/$release/bin
mkdir -p "$bin"
# One build at a time (two makes, or a make beside a bench): the second
# waits, then finds the binary there.
exec 9>"$bin/.lock"
flock 9
cmds=("$@")
[ ${#cmds[@]} -gt 0 ] || cmds=(kube-apiserver kube-controller-manager kube-proxy kubelet)
for c in "${cmds[@]}"; do
	[ -x "$bin/$c" ] && continue
	echo "building $c $release (once; cached in $bin)" >&2
	GOFLAGS=-mod=mod go build -trimpath \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$release" \
		-o "$bin/$c.tmp" "k8s.io/kubernetes/cmd/$c"
	mv "$bin/$c.tmp" "$bin/$c"
done
echo "$bin"
