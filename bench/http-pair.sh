#!/usr/bin/env bash
# The HTTP face side by side: one mock upstream, two llmqds (an older build
# and this one) in front of it, the same loads sent in turn to the mock, to
# a plain TCP relay in front of it (bench/tcp-relay.c: the floor of what
# any relay adds on this machine), to the old llmqd and to the new one, for
# several rounds, so that all meet the same machine. Prints each run's
# http-load line and, per build, the CPU llmqd spent per answered request.
# LLMQ_BENCH_CPUS=CALLERS:RELAYS pins the mock and the load generator to
# the CPU list CALLERS and the relays (tcp-relay, both llmqds) to RELAYS
# (taskset's lists): 0:1 is a host whose callers leave the gateway a core
# of its own, 1:1 all of them on one core.
#   bash bench/http-pair.sh OLD_BUILD_DIR [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(cd "${1:?usage: bash bench/http-pair.sh OLD_BUILD_DIR [ROUNDS]}" && pwd)
rounds=${2:-2}
cmake -S . -B build >/dev/null && cmake --build build -j2 >/dev/null
new=$PWD/build
load=$new/bench/http-load
pin_caller=() pin_relay=()
if [ -n "${LLMQ_BENCH_CPUS:-}" ]; then
	pin_caller=(taskset -c "${LLMQ_BENCH_CPUS%%:*}") pin_relay=(taskset -c "${LLMQ_BENCH_CPUS##*:}")
fi
t=$(mktemp -d /tmp/llmq-bench-pair-XXXXXX)
pids=()
cleanup() {
	kill "${pids[@]}" 2>/dev/null || true
	wait "${pids[@]}" 2>/dev/null || true
	rm -rf "$t"
}
trap cleanup EXIT

"${pin_caller[@]}" "$new/tests/mock_upstream" >"$t/port" 2>/dev/null &
pids+=($!)
sleep 0.3
mp=$(cat "$t/port")
"${pin_relay[@]}" "$new/bench/tcp-relay" "$mp" >"$t/relay.port" &
pids+=($!)
sleep 0.2

# start NAME BUILD: an llmqd with its limits off, its HTTP port in $t/NAME.port
start() {
	mkdir "$t/$1"
	OPENAI_BASE_URL=http://127.0.0.1:$mp/v1 OPENAI_STAGGER_SECONDS=0 OPENAI_TPM_LIMIT=0 \
		OPENAI_RPM_LIMIT=0 OPENAI_MAX_CONCURRENCY=4096 LLMQ_HTTP_ADDR=127.0.0.1:0 LLMQ_CONFIG= \
		"${pin_relay[@]}" "$2/llmqd" --socket "$t/$1/s" --db "$t/$1/db" 2>"$t/$1/log" &
	pids+=($!)
	echo $! >"$t/$1.pid"
	for _ in $(seq 50); do
		[ -S "$t/$1/s" ] && break
		sleep 0.1
	done
	"$2/llmq" --socket "$t/$1/s" ping --json | sed -n 's/.*"http": "\([^"]*\)".*/\1/p' >"$t/$1.addr"
}
start old "$old"
start new "$new"

ticks() { awk '{print $14+$15}' "/proc/$(cat "$t/$1.pid")/stat"; }

# run LABEL ADDR ARGS...: one http-load run; for llmqds, their CPU per request
run() {
	local label=$1 addr=$2 before after out n
	shift 2
	case $label in mock | relay) ;; *) before=$(ticks "$label") ;; esac
	out=$("${pin_caller[@]}" "$load" --url "http://$addr/v1/chat/completions" "$@")
	n=$(echo "$out" | sed -n 's/.*: \([0-9]*\) answered.*/\1/p')
	if [ "$label" = mock ] || [ "$label" = relay ]; then
		printf '%-5s %s\n' "$label" "$out"
	else
		after=$(ticks "$label")
		printf '%-5s %s; llmqd %s us CPU/req\n' "$label" "$out" \
			"$(awk -v d=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$n" \
				'BEGIN { printf "%.0f", d * 1e6 / hz / n }')"
	fi
}

# where WHO: the address of the mock, the relay or an llmqd, in $addr
where() {
	case $1 in
	mock) addr=127.0.0.1:$mp ;;
	relay) addr=127.0.0.1:$(cat "$t/relay.port") ;;
	*) addr=$(cat "$t/$1.addr") ;;
	esac
}

for r in $(seq "$rounds"); do
	echo "== round $r: 1,000 req/s (10 connections, one request every 10 ms each), 10 s"
	for who in mock relay old new; do
		where "$who"
		run "$who" "$addr" --connections 10 --interval-ms 10 --seconds 10
	done
	echo "== round $r: 100 connections, closed loop, 10 s"
	for who in mock relay old new; do
		where "$who"
		run "$who" "$addr" --connections 100 --seconds 10
	done
done
