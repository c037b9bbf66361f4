#!/usr/bin/env bash
# Fuzz every parser for a bounded time: bash fuzz/run.sh [SECONDS] (30 by
# default, per target). Configures a clang build with -DLLMQ_FUZZ=ON in its
# own directory (build-fuzz, or $LLMQ_FUZZ_BUILD), runs each target over a
# copy of its seed corpus and regression inputs (the committed corpus never
# grows here), prints each target's executions per second and its result,
# and fails when any target crashes, leaks or hangs. A failing input is kept
# under the build directory, with how to replay it.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
case $secs in '' | *[!0-9]*)
	echo "fuzz/run.sh: SECONDS must be a whole number, got \"$secs\"" >&2
	exit 64
	;;
esac
build=$PWD/${LLMQ_FUZZ_BUILD:-build-fuzz}
targets=(httpreq multipart protocol jsontext sse retry config text h1resp)

CC=clang cmake -S . -B "$build" -DLLMQ_FUZZ=ON -DLLMQ_TESTS=OFF \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2 --target fuzzers

work=$(mktemp -d "${TMPDIR:-/tmp}/llmq-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=0 passed=0
printf '%-10s %10s %12s  %s\n' target execs/s execs result
for t in "${targets[@]}"; do
	mkdir -p "$work/$t/corpus" "$work/$t/found"
	cp fuzz/corpus/"$t"/* "$work/$t/corpus/"
	if [ -d fuzz/regress/"$t" ]; then
		cp fuzz/regress/"$t"/* "$work/$t/corpus/"
	fi
	dict=()
	if [ -f fuzz/"$t".dict ]; then
		dict=(-dict="$PWD/fuzz/$t.dict")
	fi
	result=ok
	# -timeout: one input taking longer is a hang; timeout(1) bounds the whole run.
	if ! (cd "$work/$t" && timeout $((secs + 120)) "$build/fuzz/fuzz_$t" \
		-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$work/$t/found/" "${dict[@]}" corpus) >"$work/$t/log" 2>&1; then
		result=FAILED
	fi
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t/log")
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t/log")
	printf '%-10s %10s %12s  %s\n' "$t" "${rate:-?}" "${runs:-?}" "$result"
	if [ "$result" = ok ]; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		keep="$build/fuzz-found/$t"
		mkdir -p "$keep"
		cp "$work/$t/found/"* "$keep/" 2>/dev/null || true
		# What failed (an assertion, a sanitizer's report), then the input.
		grep -m 1 -A 12 -E '^==[0-9]+==ERROR|runtime error|^[^ ]*\.c:[0-9]+: ' "$work/$t/log" >&2 ||
			tail -n 30 "$work/$t/log" >&2
		grep -E '^(SUMMARY|artifact_prefix|Base64)' "$work/$t/log" >&2 || true
		echo "fuzz/run.sh: $t failed; its input is in $keep. Replay it with" \
			"$build/fuzz/fuzz_$t FILE, minimise it with -minimize_crash=1 -runs=100000," \
			"fix the parser and add the input under fuzz/regress/$t/." >&2
	fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
