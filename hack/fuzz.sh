#!/usr/bin/env bash
# Runs the module's fuzz targets one after the other (go test -fuzz takes one
# target per run), each for FUZZTIME (default 1m), and prints what each did.
#
#   FUZZTIME=10m hack/fuzz.sh                       # every target, 10 minutes each
#   FUZZ_TARGETS='dsr|FuzzHeaders' hack/fuzz.sh     # only "<package dir>/<target>" matching
#   FUZZ_PARALLEL=1                                 # fuzzing workers per target (default: GOMAXPROCS)
#   FUZZ_FRESH=1                                    # start from the seeds and testdata alone (make test)
#
# -fuzztime counts the replay of the corpus go caches from earlier runs
# (GOCACHE/fuzz), which a long run grows to hundreds of inputs: a few seconds
# would go to replaying part of it. FUZZ_FRESH=1 gives each target a
# throwaway cache instead (the testing package's -test.fuzzcachedir, which
# cmd/go otherwise sets), so that a short run's time goes to fuzzing.
#
# A failing input is written under the package's testdata/fuzz/<target>/, and
# the script fails: add it to the seed corpus (commit it) once fixed, so that
# plain `go test` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-1m}
only=${FUZZ_TARGETS:-.}
parallel=()
[[ -n "${FUZZ_PARALLEL:-}" ]] && parallel=(-parallel "$FUZZ_PARALLEL")
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

targets=()
while IFS= read -r file; do
	dir=$(dirname "$file")
	for name in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | cut -d' ' -f2); do
		if [[ "${dir#./}/$name" =~ $only ]]; then
			targets+=("${dir#./} $name")
		fi
	done
done < <(grep -rl --include='*_test.go' --exclude-dir=bin --exclude-dir=.git '^func Fuzz' . | sort)

if [[ ${#targets[@]} -eq 0 ]]; then
	echo "no fuzz target matches '$only'" >&2
	exit 1
fi
# fuzzed describes what the run logged in $1 did: its executions, or the
# part of the corpus it replayed when the time ran out first.
fuzzed() {
	local execs baseline
	execs=$(grep -o 'execs: [0-9]*' "$1" | tail -1 | cut -d' ' -f2 || true)
	if [[ -n $execs ]]; then
		echo "$execs execs in $fuzztime"
		return
	fi
	baseline=$(grep -o 'baseline coverage: [0-9]*/[0-9]*' "$1" | tail -1 | cut -d' ' -f3 || true)
	echo "no fuzzing: $fuzztime replayed ${baseline:-none} of the corpus (raise FUZZTIME, or FUZZ_FRESH=1)"
}

status=0
start=$SECONDS
printf '%-28s %-22s %s\n' PACKAGE TARGET RESULT
for t in "${targets[@]}"; do
	read -r dir name <<<"$t"
	log=$(mktemp -p "$scratch")
	corpus="$dir/testdata/fuzz/$name"
	before=$(ls "$corpus" 2>/dev/null | sort || true)
	cache=()
	[[ -n "${FUZZ_FRESH:-}" ]] && cache=(-args "-test.fuzzcachedir=$(mktemp -d -p "$scratch")")
	if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "${parallel[@]}" "./$dir" "${cache[@]}" >"$log" 2>&1; then
		result="ok, $(fuzzed "$log")"
	elif [[ "$(ls "$corpus" 2>/dev/null | sort || true)" == "$before" ]] &&
		grep -q '^    context deadline exceeded$' "$log" && ! grep -q -- '--- FAIL: .*/' "$log"; then
		# go1.26's fuzz coordinator can report its own -fuzztime deadline as
		# a failure (go.dev/issue/75804, fixed in go1.27); no input failed.
		result="ok, $(fuzzed "$log") (the toolchain's deadline race at the end, no failing input)"
	else
		result="FAILED (log below)"
		status=1
	fi
	printf '%-28s %-22s %s\n' "$dir" "$name" "$result"
	[[ $result == FAILED* ]] && sed 's/^/    /' "$log"
	rm -f "$log"
done
echo "${#targets[@]} targets in $((SECONDS - start))s"
exit $status
