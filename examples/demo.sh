#!/usr/bin/env bash
# Build llmq, start llmqd, submit examples/batch.jsonl, show its progress and
# one result, and leave llmqd running so that the commands printed at the end
# work when pasted. With OPENAI_API_KEY set the requests go to OPENAI_BASE_URL
# (default https://api.openai.com/v1) under the prototype's limits; without
# one they go to the mock upstream built with the tests.
#
#   bash examples/demo.sh           run it (stops and replaces an earlier run)
#   bash examples/demo.sh --clean   stop what it started and remove its folder
#
# Its folder is /tmp/llmq-demo-$UID (LLMQ_DEMO_DIR to choose another);
# LLMQ_BUILD=DIR uses an existing build instead of installing and building.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
work=${LLMQ_DEMO_DIR:-/tmp/llmq-demo-$(id -u)}

# Stop what an earlier run left running, and remove its folder.
clean() {
	local pid
	if [ -f "$work/pids" ]; then
		while read -r pid; do
			# Only what it started: a pid may have been reused since.
			grep -qaE 'llmqd|mock_upstream' "/proc/$pid/cmdline" 2>/dev/null &&
				kill "$pid" 2>/dev/null || true
		done <"$work/pids"
		sleep 0.3
	fi
	rm -rf "$work"
}

case "${1:-}" in
--clean)
	clean
	echo "llmq demo: stopped and removed $work"
	exit 0
	;;
"") ;;
*)
	echo "usage: bash examples/demo.sh [--clean]" >&2
	exit 64
	;;
esac

if [ -n "${LLMQ_BUILD:-}" ]; then
	bin=$(cd "$LLMQ_BUILD" && pwd)
else
	bash .ci/deps
	cmake -S . -B build >/dev/null
	cmake --build build -j2 >/dev/null
	bin=$top/build
fi

clean
mkdir -m 0700 "$work"
export LLMQ_SOCKET=$work/llmq.sock LLMQ_DB=$work/llmq.db LLMQ_CONFIG=
# The HTTP face on any free loopback port (the default is 127.0.0.1:8411).
export LLMQ_HTTP_ADDR=${LLMQ_HTTP_ADDR:-127.0.0.1:0}
# On failure, stop what was started; on success it keeps running.
trap '[ $? -eq 0 ] || clean' EXIT

if [ -n "${OPENAI_API_KEY:-}" ]; then
	echo "llmq demo: sending to ${OPENAI_BASE_URL:-https://api.openai.com/v1}"
else
	setsid "$bin/tests/mock_upstream" --latency-ms 300 --tpm 60000 --rpm 600 \
		>"$work/mock.port" 2>"$work/mock.log" </dev/null &
	echo $! >>"$work/pids"
	for _ in $(seq 50); do [ -s "$work/mock.port" ] && break; sleep 0.1; done
	export OPENAI_BASE_URL=http://127.0.0.1:$(cat "$work/mock.port")/v1
	# The mock answers in 300 ms: a shorter stagger than the prototype's 15 s.
	export OPENAI_STAGGER_SECONDS=${OPENAI_STAGGER_SECONDS:-0.25}
	export OPENAI_TPM_LIMIT=${OPENAI_TPM_LIMIT:-60000} OPENAI_RPM_LIMIT=${OPENAI_RPM_LIMIT:-600}
	echo "llmq demo: no OPENAI_API_KEY, sending to the local mock upstream at $OPENAI_BASE_URL"
fi

setsid "$bin/llmqd" >"$work/llmqd.log" 2>&1 </dev/null &
echo $! >>"$work/pids"
for _ in $(seq 50); do [ -S "$LLMQ_SOCKET" ] && break; sleep 0.1; done

llmq=("$bin/llmq" --socket "$LLMQ_SOCKET")
shown=$(printf '%q ' "${llmq[@]}")
"${llmq[@]}" submit --dry-run examples/batch.jsonl
id=$("${llmq[@]}" submit examples/batch.jsonl)
echo "llmq demo: submitted batch $id"
http=$("${llmq[@]}" ping --json | sed -n 's/.*"http": "\([^"]*\)".*/\1/p')
if [ -n "$http" ] && command -v curl >/dev/null; then
	echo "llmq demo: an interactive call through the same lane, http://$http/v1 :"
	curl -sS "http://$http/v1/chat/completions" -H 'Content-Type: application/json' \
		-d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}],"max_tokens":8}'
	echo
fi
"${llmq[@]}" wait "$id"
"${llmq[@]}" status "$id"
"${llmq[@]}" results "$id" -o "$work/results.jsonl"
"${llmq[@]}" results "$id" --errors -o "$work/errors.jsonl"
echo
echo "llmq demo: the first of $(wc -l <"$work/results.jsonl") results ($work/results.jsonl):"
head -n 1 "$work/results.jsonl" | cut -c 1-300
echo
echo "llmq demo: llmqd is still running (pids $(paste -sd ' ' "$work/pids")), so that you can look around:"
db=$(printf '%q' "$LLMQ_DB")
echo "  ${shown}status"
echo "  ${shown}results $id | head -n 3"
echo "  sqlite3 $db 'select * from batch_summary'"
echo "  sqlite3 $db 'select class, outcome, count(*) from traffic group by 1, 2'"
if [ -n "$http" ]; then echo "  curl -s http://$http/metrics | grep llmq_requests_total"; fi
if [ -n "$http" ]; then echo "  curl -s http://$http/ | grep -m1 '<title>'   # the live page: open http://$http/ in a browser"; fi
echo "  tail $(printf '%q' "$work/llmqd.log")"
again=
[ -n "${LLMQ_DEMO_DIR:-}" ] && again="LLMQ_DEMO_DIR=$(printf '%q' "$work") "
echo "  ${again}bash $(printf '%q' "$top/examples/demo.sh") --clean   # stops llmqd and the mock, removes $(printf '%q' "$work")"
