#!/bin/sh
# The README's first command, examples/demo.sh, as a new user meets it (on a
# build that exists): it drains the sample batch, shows one result, leaves
# llmqd running, and each command it prints at the end works when pasted
# into a fresh shell; the last one (--clean) stops llmqd and the mock and
# removes what the demo made.
# usage: demo-test.sh BUILD_DIR SOURCE_DIR
set -u
build=$1
src=$2
tmp=$(mktemp -d /tmp/llmq-demo-test-XXXXXX)
work=$tmp/demo
fail() {
	echo "demo: $*" >&2
	[ -f "$tmp/out" ] && sed 's/^/  | /' "$tmp/out" >&2
	LLMQ_DEMO_DIR=$work bash "$src/examples/demo.sh" --clean >/dev/null 2>&1
	rm -rf "$tmp"
	exit 1
}

env -u OPENAI_API_KEY LLMQ_BUILD="$build" LLMQ_DEMO_DIR="$work" \
	timeout 120 bash "$src/examples/demo.sh" >"$tmp/out" 2>&1 </dev/null || fail "the demo failed"
[ "$(grep -c '^{"id":"batch_req_' "$tmp/out")" -eq 1 ] || fail "not exactly one result line shown"
pids=$(sed -n 's/.*llmqd is still running (pids \([0-9 ]*\)).*/\1/p' "$tmp/out")
[ -n "$pids" ] || fail "it does not say that llmqd is still running"
for p in $pids; do kill -0 "$p" 2>/dev/null || fail "pid $p is not running"; done

sed -n '/so that you can look around:/,$p' "$tmp/out" | sed -n 's/^  //p' >"$tmp/commands"
[ "$(wc -l <"$tmp/commands")" -ge 5 ] || fail "fewer than 5 commands printed"
while IFS= read -r cmd; do
	out=$(env -i PATH=/usr/bin:/bin HOME="$tmp" bash -c "set -o pipefail; $cmd" 2>&1 </dev/null) ||
		fail "a printed command failed: $cmd
$out"
	[ -n "$out" ] || fail "a printed command printed nothing: $cmd"
done <"$tmp/commands"

# The last command was --clean: nothing of the demo is left.
[ ! -e "$work" ] || fail "--clean left $work"
# Gone, or a zombie waiting for whoever adopted it to reap it.
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
for p in $pids; do
	n=0
	while alive "$p" && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
	! alive "$p" || fail "--clean left pid $p running"
done
echo "demo: one result shown, $(grep -c . "$tmp/commands") printed commands work, --clean leaves nothing"
rm -rf "$tmp"
