#!/bin/sh
# The source layout the README's "Source layout" describes, checked:
#   - no source file of daemon/, common/ or client/ over 600 lines;
#   - no header that includes, through others, itself;
#   - each daemon part includes only the parts below it (the tiers below),
#     so that the folders read as the architecture: the faces and what they
#     show on top, the engine, then the gate, the fleet and the upstream
#     client, then the store; service/ (configuration, systemd, callers'
#     identity) beside all, holding each part's settings type.
#   sh tests/layout.sh SOURCE_DIR
set -eu
cd "${1:?usage: layout.sh SOURCE_DIR}"
max=600
fail=0

files=$(find daemon common client -name '*.[ch]' | sort)

# 1. Sizes.
for f in $files; do
	n=$(wc -l <"$f")
	if [ "$n" -gt "$max" ]; then
		echo "layout: $f has $n lines, over $max: split it by what its parts own" >&2
		fail=1
	fi
done

# The include edges, "FROM TO", resolved to files of the tree.
edges=$(for f in $files; do
	sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f" | while read -r inc; do
		for to in "daemon/$inc" "common/$inc" "$(dirname "$f")/$inc"; do
			if [ -f "$to" ]; then
				echo "$f $to"
				break
			fi
		done
	done
done)

# 2. Include circles, among headers.
circle=$(echo "$edges" | awk '
	$1 ~ /\.h$/ { n[$1]++; to[$1, n[$1]] = $2 }
	function walk(f, path,   i) {
		if (state[f] == 1) { print path " -> " f; found = 1; return }
		if (state[f] == 2 || found) return
		state[f] = 1
		for (i = 1; i <= n[f]; i++) walk(to[f, i], path == "" ? f : path " -> " f)
		state[f] = 2
	}
	END { for (f in n) if (!found) walk(f, "") }')
if [ -n "$circle" ]; then
	echo "layout: an include circle: $circle" >&2
	fail=1
fi

# 3. The parts' tiers: a part may include its own folder, service/, and
# the parts of lower tiers; the top tier's parts may include each other
# (the live page runs the socket's status commands; both faces serve the
# metrics). service/ may include the gate's, the fleet's and the store's
# headers, for the settings types the configuration holds.
tier() {
	case $1 in
	sock | http | view) echo 4 ;;
	engine) echo 3 ;;
	gate | fleet | upstream) echo 2 ;;
	store) echo 1 ;;
	*) echo "" ;;
	esac
}
bad=$(echo "$edges" | while read -r from to; do
	case $from in daemon/*/*) ;; *) continue ;; esac
	case $to in daemon/*/*) ;; *) continue ;; esac
	fp=$(echo "$from" | cut -d/ -f2)
	tp=$(echo "$to" | cut -d/ -f2)
	[ "$fp" = "$tp" ] && continue
	[ "$tp" = service ] && continue
	if [ "$fp" = service ]; then
		case $tp in gate | fleet | store) continue ;; esac
		echo "$from includes $to"
		continue
	fi
	ft=$(tier "$fp")
	tt=$(tier "$tp")
	if [ -z "$ft" ] || [ -z "$tt" ]; then
		echo "$from includes $to: daemon/$fp or daemon/$tp has no tier in tests/layout.sh"
		continue
	fi
	if [ "$tt" -gt "$ft" ] || { [ "$tt" -eq "$ft" ] && [ "$ft" -lt 4 ]; }; then
		echo "$from includes $to, a part above it or beside it"
	fi
done)
if [ -n "$bad" ]; then
	echo "$bad" | sed 's/^/layout: /' >&2
	echo "layout: move what is shared below both parts, or hand it over through llmqd.h" >&2
	fail=1
fi

[ "$fail" -eq 0 ] && echo "layout: $(echo "$files" | wc -l) files, none over $max lines, no include circle, every part above what it includes"
exit "$fail"
