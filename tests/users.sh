#!/bin/sh
# The users and groups of the access tests, one set per test runner, named
# after the runner's pid so that runs side by side never share one:
#   llmqt-PID-alice, -bob, -carol (admin), -mallory (outside the users' group);
#   groups llmqt-PID-users, llmqt-PID-admin.
#
#   users.sh create PID   make the set (nothing when it exists)
#   users.sh remove PID   kill the set's processes, delete its users and groups
#   users.sh sweep        remove every set whose runner is gone (a run that was
#                         killed before it could clean up)
#
# Needs root. Each step retries while another run holds the lock on
# /etc/passwd (useradd and userdel refuse at once when it is taken).
set -u

retry() {
	n=0
	until "$@" 2>/tmp/llmqt-users-err.$$; do
		n=$((n + 1))
		if [ $n -ge 50 ]; then
			cat /tmp/llmqt-users-err.$$ >&2
			rm -f /tmp/llmqt-users-err.$$
			return 1
		fi
		sleep 0.2
	done
	rm -f /tmp/llmqt-users-err.$$
}

create() {
	p=llmqt-$1
	getent group "$p-users" >/dev/null || retry groupadd "$p-users" || return 1
	getent group "$p-admin" >/dev/null || retry groupadd "$p-admin" || return 1
	for u in alice bob; do
		id "$p-$u" >/dev/null 2>&1 || retry useradd -M -N -G "$p-users" "$p-$u" || return 1
	done
	id "$p-carol" >/dev/null 2>&1 ||
		retry useradd -M -N -G "$p-users,$p-admin" "$p-carol" || return 1
	id "$p-mallory" >/dev/null 2>&1 || retry useradd -M -N "$p-mallory" || return 1
}

remove() {
	p=llmqt-$1
	rc=0
	for u in alice bob carol mallory; do
		id "$p-$u" >/dev/null 2>&1 || continue
		# userdel refuses a user with processes: a test's child may outlive it.
		pkill -KILL -U "$p-$u" 2>/dev/null
		retry userdel "$p-$u" || rc=1
	done
	for g in users admin; do
		getent group "$p-$g" >/dev/null || continue
		retry groupdel "$p-$g" || rc=1
	done
	return $rc
}

sweep() {
	rc=0
	for pid in $( (getent passwd; getent group) | sed -n 's/^llmqt-\([0-9][0-9]*\)-.*/\1/p' | sort -u); do
		kill -0 "$pid" 2>/dev/null && continue
		remove "$pid" || rc=1
	done
	return $rc
}

case "${1:-}" in
create) create "$2" ;;
remove) remove "$2" ;;
sweep) sweep ;;
*)
	echo "usage: $0 create PID | remove PID | sweep" >&2
	exit 64
	;;
esac
