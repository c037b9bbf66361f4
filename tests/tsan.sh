#!/usr/bin/env bash
# llmqd's threads (the loop and the store's writer) under ThreadSanitizer,
# with everything that makes them meet at once: a 30,000-line batch stored
# in slices by the writer while it drains, interactive calls and streams
# over HTTP, status polls, and a SIGHUP every 20 ms that copies the new
# configuration over the running one. Fails on any report, or if llmqd
# does not stop cleanly.
#   bash tests/tsan.sh TSAN_BUILD BUILD
# TSAN_BUILD: a build with -DLLMQ_TSAN=ON (its llmqd); BUILD: an ordinary
# build with the tests and benchmarks (the mock upstream, llmq, http-load).
set -euo pipefail
tsan=$(cd "${1:?usage: tests/tsan.sh TSAN_BUILD BUILD}" && pwd)
bld=$(cd "${2:?usage: tests/tsan.sh TSAN_BUILD BUILD}" && pwd)
t=$(mktemp -d /tmp/llmq-tsan-XXXXXX)
pids=()
cleanup() {
	kill "${pids[@]}" 2>/dev/null || true
	wait "${pids[@]}" 2>/dev/null || true
	rm -rf "$t"
}
trap cleanup EXIT

awk 'BEGIN { for (i = 0; i < 30000; i++)
	printf "{\"custom_id\": \"r%d\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", " \
	       "\"body\": {\"model\": \"gpt-4o-mini\", \"max_tokens\": 8, " \
	       "\"messages\": [{\"role\": \"user\", \"content\": \"line %d\"}]}}\n", i, i }' \
	>"$t/batch.jsonl"

"$bld/tests/mock_upstream" >"$t/port" 2>/dev/null &
pids+=($!)
for _ in $(seq 50); do [ -s "$t/port" ] && break; sleep 0.1; done
TSAN_OPTIONS="halt_on_error=0 exitcode=66 log_path=$t/tsan" \
	OPENAI_BASE_URL="http://127.0.0.1:$(cat "$t/port")/v1" OPENAI_TPM_LIMIT=0 OPENAI_RPM_LIMIT=0 \
	OPENAI_STAGGER_SECONDS=0 OPENAI_MAX_CONCURRENCY=64 LLMQ_HTTP_ADDR=127.0.0.1:0 LLMQ_CONFIG= \
	"$tsan/llmqd" --socket "$t/s" --db "$t/db" 2>"$t/log" &
d=$!
pids+=($d)
for _ in $(seq 100); do [ -S "$t/s" ] && break; sleep 0.1; done
llmq() { "$bld/llmq" --socket "$t/s" "$@"; }
http=$(llmq ping --json | sed -n 's/.*"http": "\([^"]*\)".*/\1/p')
[ -n "$http" ] || { echo "tsan: llmqd did not start; its log:" >&2; cat "$t/log" >&2; exit 1; }

(for _ in $(seq 400); do kill -HUP "$d" 2>/dev/null || exit 0; sleep 0.02; done) &
hup=$!
"$bld/bench/http-load" --url "http://$http/v1/chat/completions" --connections 4 --seconds 8 \
	>"$t/calls" &
calls=$!
"$bld/bench/http-load" --url "http://$http/v1/chat/completions" --connections 2 --seconds 8 \
	--stream >"$t/streams" &
streams=$!
id=$(llmq submit "$t/batch.jsonl")
for _ in $(seq 40); do llmq status "$id" >/dev/null; sleep 0.2; done
wait "$hup" "$calls" "$streams"
done_jobs=$(llmq status "$id" --json | sed -n 's/.*"succeeded": \([0-9]*\).*/\1/p' | head -1)

kill -TERM "$d"
rc=0
wait "$d" || rc=$?
pids=("${pids[@]/$d/}")
echo "tsan: $(grep -c 'reload' "$t/log") reload lines; batch $id: ${done_jobs:-?} of 30000 succeeded; calls: $(cat "$t/calls"); streams: $(cat "$t/streams")"
if ls "$t"/tsan.* >/dev/null 2>&1; then
	echo "tsan: ThreadSanitizer reported:" >&2
	cat "$t"/tsan.* >&2
	exit 1
fi
if [ "$rc" -ne 0 ]; then
	echo "tsan: llmqd exited $rc on SIGTERM; its log:" >&2
	tail -20 "$t/log" >&2
	exit 1
fi
echo "tsan: no report"
