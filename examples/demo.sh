#!/usr/bin/env bash
# Build llmq, start llmqd, submit examples/batch.jsonl, show its progress and
# say where the results are. With OPENAI_API_KEY set the requests go to
# OPENAI_BASE_URL (default https://api.openai.com/v1) under the prototype's
# limits; without one they go to the mock upstream built with the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/deps
cmake -S . -B build >/dev/null
cmake --build build -j2 >/dev/null
bin=$PWD/build

work=$(mktemp -d /tmp/llmq-demo.XXXXXX)
export LLMQ_SOCKET=$work/llmq.sock LLMQ_DB=$work/llmq.db
# The HTTP face on any free loopback port (the default is 127.0.0.1:8411).
export LLMQ_HTTP_ADDR=${LLMQ_HTTP_ADDR:-127.0.0.1:0}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

if [ -n "${OPENAI_API_KEY:-}" ]; then
	echo "llmq demo: sending to ${OPENAI_BASE_URL:-https://api.openai.com/v1}"
else
	"$bin/tests/mock_upstream" --latency-ms 300 --tpm 60000 --rpm 600 >"$work/mock.port" 2>"$work/mock.log" &
	pids+=($!)
	for _ in $(seq 50); do [ -s "$work/mock.port" ] && break; sleep 0.1; done
	export OPENAI_BASE_URL=http://127.0.0.1:$(cat "$work/mock.port")/v1
	# The mock answers in 300 ms: a shorter stagger than the prototype's 15 s.
	export OPENAI_STAGGER_SECONDS=${OPENAI_STAGGER_SECONDS:-0.25}
	export OPENAI_TPM_LIMIT=${OPENAI_TPM_LIMIT:-60000} OPENAI_RPM_LIMIT=${OPENAI_RPM_LIMIT:-600}
	echo "llmq demo: no OPENAI_API_KEY, sending to the local mock upstream at $OPENAI_BASE_URL"
fi

"$bin/llmqd" 2>"$work/llmqd.log" &
pids+=($!)
for _ in $(seq 50); do [ -S "$LLMQ_SOCKET" ] && break; sleep 0.1; done

"$bin/llmq" submit --dry-run examples/batch.jsonl
id=$("$bin/llmq" submit examples/batch.jsonl)
echo "llmq demo: submitted batch $id"
http=$("$bin/llmq" ping --json | sed -n 's/.*"http": "\([^"]*\)".*/\1/p')
if [ -n "$http" ] && command -v curl >/dev/null; then
	echo "llmq demo: an interactive call through the same lane, http://$http/v1 :"
	curl -sS "http://$http/v1/chat/completions" -H 'Content-Type: application/json' \
		-d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}],"max_tokens":8}'
	echo
fi
"$bin/llmq" wait "$id"
"$bin/llmq" status "$id"
"$bin/llmq" results "$id" -o "$work/results.jsonl"
"$bin/llmq" results "$id" --errors -o "$work/errors.jsonl"
echo
echo "results:  $work/results.jsonl"
echo "errors:   $work/errors.jsonl"
echo "database: sqlite3 $LLMQ_DB 'select * from batch_summary'"
echo "traffic:  sqlite3 $LLMQ_DB 'select class, outcome, count(*) from traffic group by 1, 2'"
echo "metrics:  $bin/llmq metrics   (or curl http://$http/metrics)"
echo "log:      $work/llmqd.log"
