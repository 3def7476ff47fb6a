#!/usr/bin/env bash
# Regenerates every bpf2go output and the datapath gRPC stubs in a scratch
# copy of the tree and fails if
# any differs from the committed one: generated code must be committed fresh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
(cd "$root" && tar --exclude=./bin --exclude=./.git -cf - .) | tar -xf - -C "$scratch"
(cd "$scratch" && go generate ./plugins/...)
(cd "$scratch/core/datapathrpc" && protoc --go_out=paths=source_relative:. --go-grpc_out=paths=source_relative:. datapath.proto)
stale=0
while IFS= read -r f; do
	if ! cmp -s "$root/$f" "$scratch/$f"; then
		echo "stale generated file: $f (run 'make generate' and commit)"
		stale=1
	fi
done < <(cd "$scratch" && find plugins -name '*_bpfel.go' -o -name '*_bpfel.o'; find core/datapathrpc -name '*.pb.go')
exit $stale
