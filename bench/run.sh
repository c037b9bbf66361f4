#!/usr/bin/env bash
# Runs llmq's benchmarks and prints their figures. Takes about 20 minutes:
# the gate runs measure the steady state after a first minute.
#   bash bench/run.sh [drain|gate|http|mixed|hostile|upload|depth|fleet|all]
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build >/dev/null && cmake --build build -j2 >/dev/null
b=./build/bench/llmq-bench
what=${1:-all}

if [ "$what" = drain ] || [ "$what" = all ]; then
	echo "== throughput: 20,000 jobs, zero latency, concurrency 256"
	$b --mode drain --jobs 20000 --concurrency 256 2>/dev/null
	echo "== ingest: 50,000 lines"
	$b --mode drain --jobs 50000 --concurrency 256 2>/dev/null | grep ingest
fi
if [ "$what" = gate ] || [ "$what" = all ]; then
	# ~300 tokens a request (200 prompt characters + max_tokens 250).
	common="--mode gate --jobs 800 --latency-ms 300 --concurrency 32 --prompt-chars 200 --max-tokens 250 --tpm 60000 --rpm 600 --mock-tpm 60000 --mock-rpm 600 --warmup-s 60 --measure-s 120"
	echo "== TPM 60k / RPM 600, 300 ms, accurate estimates, headroom 0.03"
	$b $common --headroom 0.03 2>/dev/null
	echo "== same, estimates overshoot 2x (answers use half their max_tokens)"
	$b $common --jobs 1500 --headroom 0.03 --completion-ratio 0.5 2>/dev/null
	# The provider's bucket holds a minute: a second client's share shows
	# only once llmq has used up what the bucket held at the start, so the
	# warm-up is longer here.
	echo "== same, a second client spends 30% of the key's budget behind llmq's back"
	$b $common --jobs 2000 --headroom 0.03 --external-tpm 18000 --warmup-s 300 2>/dev/null
	echo "== one batch of 300 chat requests (146k tokens charged, 119k used), limits at 100%: time against the fastest the buckets allow"
	$b --mode drain --jobs 300 --concurrency 32 --latency-ms 300 --prompt-chars 400 --max-tokens 387 --completion-ratio 0.77 --tpm 60000 --rpm 600 --mock-tpm 60000 --mock-rpm 600 --headroom 0 2>/dev/null | tail -1
	echo "== provider enforces the minute over fixed 1 s windows while its headers speak of the minute; limits at 100%"
	$b $common --headroom 0 --enforce-window-ms 1000 2>/dev/null
	for burst in 0 1 5; do
		echo "== provider's bucket is 1 s (its headers say so); burst ${burst}s, headroom 0.03"
		$b $common --headroom 0.03 --window-ms 1000 --burst $burst 2>/dev/null
	done
	echo "== high tier: TPM 10M, RPM 10k, 2 s latency, 20,000 requests"
	$b --mode gate --jobs 20000 --latency-ms 2000 --concurrency 512 --prompt-chars 400 --max-tokens 500 --tpm 10000000 --rpm 10000 --mock-tpm 10000000 --mock-rpm 10000 --headroom 0.03 --warmup-s 30 --measure-s 90 2>/dev/null
fi

if [ "$what" = http ] || [ "$what" = all ]; then
	# Added latency of the HTTP face: the mock at zero latency, llmqd's limits
	# off, the same load straight to the mock and through llmqd.
	t=$(mktemp -d /tmp/llmq-bench-http-XXXXXX)
	./build/tests/mock_upstream >"$t/port" 2>/dev/null &
	mock=$!
	sleep 0.3
	mp=$(cat "$t/port")
	OPENAI_BASE_URL=http://127.0.0.1:$mp/v1 OPENAI_STAGGER_SECONDS=0 OPENAI_TPM_LIMIT=0 \
		OPENAI_RPM_LIMIT=0 OPENAI_MAX_CONCURRENCY=4096 LLMQ_HTTP_ADDR=127.0.0.1:0 LLMQ_CONFIG= \
		./build/llmqd --socket "$t/s" --db "$t/db" 2>"$t/log" &
	daemon=$!
	sleep 0.5
	hp=$(./build/llmq --socket "$t/s" ping --json | sed -n 's/.*"http": "\([^"]*\)".*/\1/p')
	for c in 1 100; do
		echo "== $c connection(s), 10 s, straight to the mock"
		./build/bench/http-load --url "http://127.0.0.1:$mp/v1/chat/completions" --connections $c --seconds 10
		echo "== $c connection(s), 10 s, through llmqd"
		./build/bench/http-load --url "http://$hp/v1/chat/completions" --connections $c --seconds 10
	done
	for via in "127.0.0.1:$mp" "$hp"; do
		echo "== 1,000 req/s (10 connections, one request every 10 ms each), to $via"
		./build/bench/http-load --url "http://$via/v1/chat/completions" --connections 10 --interval-ms 10 --seconds 10
	done
	echo "== 100 connections, streamed answers, through llmqd"
	./build/bench/http-load --url "http://$hp/v1/chat/completions" --connections 100 --seconds 10 --stream
	grep -E 'VmHWM' /proc/$daemon/status | sed 's/^/llmqd peak RSS: /'
	echo "llmqd CPU (user+sys ticks): $(awk '{print $14+$15}' /proc/$daemon/stat)"
	kill $daemon $mock
	wait $daemon $mock 2>/dev/null || true
	rm -rf "$t"
fi
if [ "$what" = mixed ] || [ "$what" = all ]; then
	# A batch and interactive calls on one rate-limited lane.
	echo "== TPM 60k / RPM 600, 300 ms: a batch, and one interactive call every 2 s"
	$b --mode gate --jobs 800 --latency-ms 300 --concurrency 32 --prompt-chars 200 --max-tokens 250 --tpm 60000 --rpm 600 --mock-tpm 60000 --mock-rpm 600 --warmup-s 60 --measure-s 120 --headroom 0.03 --interactive-every-ms 2000 2>/dev/null
fi
if [ "$what" = upload ] || [ "$what" = all ]; then
	# The Batch API's way in: upload a JSONL file, create a batch on it.
	t=$(mktemp -d /tmp/llmq-bench-upload-XXXXXX)
	./build/tests/mock_upstream --latency-ms 20 >"$t/port" 2>/dev/null &
	mock=$!
	sleep 0.3
	mp=$(cat "$t/port")
	for chars in 100 3900; do
		rm -rf "$t/db"*
		OPENAI_BASE_URL=http://127.0.0.1:$mp/v1 OPENAI_STAGGER_SECONDS=0 OPENAI_TPM_LIMIT=0 \
			OPENAI_RPM_LIMIT=0 OPENAI_MAX_CONCURRENCY=16 LLMQ_HTTP_ADDR=127.0.0.1:0 LLMQ_CONFIG= \
			./build/llmqd --socket "$t/s" --db "$t/db" 2>>"$t/log" &
		daemon=$!
		for _ in $(seq 50); do ./build/llmq --socket "$t/s" ping >/dev/null 2>&1 && break; sleep 0.1; done
		hp=$(./build/llmq --socket "$t/s" ping --json | sed -n 's/.*"http": "\([^"]*\)".*/\1/p')
		echo "== 50,000 lines of ~$((chars + 150)) bytes: POST /v1/files, then POST /v1/batches"
		./build/bench/upload --http "$hp" --pid $daemon --lines 50000 --prompt-chars $chars
		kill $daemon
		wait $daemon 2>/dev/null || true
	done
	kill $mock
fi
if [ "$what" = fleet ] || [ "$what" = all ]; then
	# Several llmqd on one key through a redis-server, each with the cookbook's
	# work (300 chat requests), limits at 100%: about 12 minutes.
	common="--concurrency 32 --latency-ms 300 --prompt-chars 400 --max-tokens 387 --completion-ratio 0.77 --tpm 60000 --rpm 600 --mock-tpm 60000 --mock-rpm 600 --headroom 0"
	echo "== three hosts on one key, each draining 300 chat requests (TPM 60k / RPM 600, 300 ms)"
	$b $common --hosts 3 --jobs 300 2>/dev/null | grep -v '^mock_upstream'
	echo "== ten hosts on one key, each draining 90"
	$b $common --hosts 10 --jobs 90 2>/dev/null | grep -v '^mock_upstream'
	echo "== a grant's round trip on a local Unix socket, nothing else running"
	t=$(mktemp -d /tmp/llmq-bench-rtt-XXXXXX)
	redis-server --save '' --appendonly no --port 0 --unixsocket "$t/redis.sock" --dir "$t" >/dev/null 2>&1 &
	redis=$!
	for _ in $(seq 50); do [ -S "$t/redis.sock" ] && break; sleep 0.1; done
	./build/bench/fleet-rtt --socket "$t/redis.sock" --grants 20000
	kill $redis
	wait $redis 2>/dev/null || true
	rm -rf "$t"
	echo "== the cost of sharing: 20,000 jobs, zero latency, concurrency 256, one llmqd without and with Redis"
	$b --mode drain --jobs 20000 --concurrency 256 2>/dev/null | grep throughput
	$b --mode drain --jobs 20000 --concurrency 256 --redis 2>/dev/null | grep -E "throughput|fleet"
fi
if [ "$what" = hostile ] || [ "$what" = all ]; then
	# Misbehaving clients and outside programs against one running llmqd.
	t=$(mktemp -d /tmp/llmq-bench-hostile-XXXXXX)
	./build/tests/mock_upstream --latency-ms 20 >"$t/port" 2>/dev/null &
	mock=$!
	sleep 0.3
	mp=$(cat "$t/port")
	start_daemon() {
		OPENAI_BASE_URL=http://127.0.0.1:$mp/v1 OPENAI_STAGGER_SECONDS=0 OPENAI_TPM_LIMIT=0 \
			OPENAI_RPM_LIMIT=0 OPENAI_MAX_CONCURRENCY=16 LLMQ_HTTP_ADDR=127.0.0.1:0 LLMQ_CONFIG= \
			./build/llmqd --socket "$t/s" --db "$t/db" 2>>"$t/log" &
		daemon=$!
		for _ in $(seq 50); do ./build/llmq --socket "$t/s" ping >/dev/null 2>&1 && break; sleep 0.1; done
	}
	start_daemon
	hp=$(./build/llmq --socket "$t/s" ping --json | sed -n 's/.*"http": "\([^"]*\)".*/\1/p')
	python3 - "$t/in.jsonl" 2000 <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "max_tokens": 5,
                     "messages": [{"role": "user", "content": f"question {i} " + "x" * 300}]}}) + "\n")
PY
	id=$(./build/llmq --socket "$t/s" submit "$t/in.jsonl")
	./build/llmq --socket "$t/s" wait "$id" >/dev/null 2>&1
	echo "== 1,000 idle connections on the socket and 1,000 on the HTTP face"
	./build/bench/hostile conns --socket "$t/s" --http "$hp" --pid $daemon --n 1000
	echo "== a client pipelining results requests for 20 s, never reading"
	./build/bench/hostile pipeline --socket "$t/s" --pid $daemon --batch "$id" --seconds 20
	echo "== sqlite3 holds BEGIN EXCLUSIVE for 20 s while a batch runs"
	id2=$(./build/llmq --socket "$t/s" submit "$t/in.jsonl")
	./build/bench/hostile lock --socket "$t/s" --db "$t/db" --seconds 20
	./build/llmq --socket "$t/s" wait "$id2" >/dev/null 2>&1 || true
	echo "after the lock: $(sqlite3 "$t/db" "SELECT count(*) FROM jobs WHERE batch_id = '$id2' AND state = 'succeeded'") of 2000 jobs succeeded, $(sqlite3 "$t/db" "SELECT count(*) FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE j.batch_id = '$id2'") attempts"
	rounds=30
	echo "== kill -9 at random moments, $rounds rounds, a 2,000-job batch running"
	id3=$(./build/llmq --socket "$t/s" submit "$t/in.jsonl")
	for _ in $(seq $rounds); do
		sleep "0.$((RANDOM % 9 + 1))"
		kill -9 $daemon
		wait $daemon 2>/dev/null || true
		start_daemon
	done
	./build/llmq --socket "$t/s" wait "$id3" >/dev/null 2>&1 || true
	./build/llmq --socket "$t/s" results "$id3" -o "$t/out.jsonl" 2>/dev/null || true
	echo "after $rounds kill -9s: $(sqlite3 "$t/db" "SELECT count(*) FROM jobs WHERE batch_id = '$id3' AND state = 'succeeded'") of 2000 succeeded; $(wc -l <"$t/out.jsonl") result lines, $(python3 -c 'import json,sys; print(len({json.loads(l)["custom_id"] for l in open(sys.argv[1])}))' "$t/out.jsonl") distinct custom_ids; $(sqlite3 "$t/db" "SELECT count(*) FROM batches") batches stored"
	kill $daemon $mock
	wait $daemon $mock 2>/dev/null || true
	rm -rf "$t"
fi
if [ "$what" = depth ] || [ "$what" = all ]; then
	# A million jobs queued on a lane that cannot send (its upstream is not
	# there): what a question and a scrape cost at that depth.
	t=$(mktemp -d /tmp/llmq-bench-depth-XXXXXX)
	OPENAI_BASE_URL=http://127.0.0.1:9/v1 OPENAI_TPM_LIMIT=0 OPENAI_STAGGER_SECONDS=0 LLMQ_HTTP_ADDR=127.0.0.1:0 \
		LLMQ_CONFIG= ./build/llmqd --socket "$t/s" --db "$t/db" 2>>"$t/log" &
	daemon=$!
	for _ in $(seq 50); do ./build/llmq --socket "$t/s" ping >/dev/null 2>&1 && break; sleep 0.1; done
	hp=$(./build/llmq --socket "$t/s" ping --json | sed -n 's/.*"http": "\([^"]*\)".*/\1/p')
	python3 - "$t/in.jsonl" 50000 <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "max_tokens": 5,
                     "messages": [{"role": "user", "content": f"question {i}"}]}}) + "\n")
PY
	for _ in $(seq 20); do ./build/llmq --socket "$t/s" submit "$t/in.jsonl" >/dev/null; done
	# Large batches are let go a slice a loop turn after their submit returns: measure after.
	while [ "$(sqlite3 "$t/db" "SELECT count(*) FROM batches WHERE state = 'validating'")" != 0 ] ||
		[ "$(sqlite3 "$t/db" "SELECT count(*) FROM jobs WHERE lane LIKE '~%'")" != 0 ]; do
		sleep 1
	done
	sleep 2
	echo "== $(sqlite3 "$t/db" "SELECT count(*) FROM jobs WHERE state = 'queued'") jobs queued"
	./build/bench/hostile depth --socket "$t/s" --http "$hp" --seconds 20
	kill $daemon
	wait $daemon 2>/dev/null || true
	rm -rf "$t"
fi
