#!/bin/sh
# The systemd units as installed: `cmake --install` into a folder of the
# test's, then
#  - systemd-analyze verify passes on them (ExecStart= names the installed
#    llmqd, the man pages of Documentation= are found);
#  - enabling llmqd, as the README says, enables the service at boot and both
#    socket units, each naming its socket as llmqd expects.
# usage: units.sh BUILD_DIR
set -eu
build=$1
tmp=$(mktemp -d /tmp/llmq-units-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() {
	echo "units: $*" >&2
	exit 1
}

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
units=$tmp/prefix/lib/systemd/system
grep -qx "ExecStart=$tmp/prefix/bin/llmqd" "$units/llmqd.service" ||
	fail "ExecStart= does not name the installed llmqd: $(grep ExecStart= "$units/llmqd.service")"
MANPATH=$tmp/prefix/share/man systemd-analyze verify \
	"$units/llmqd.service" "$units/llmqd.socket" "$units/llmqd-http.socket" ||
	fail "systemd-analyze verify refused the installed units"

grep -qx 'FileDescriptorName=llmq' "$units/llmqd.socket" || fail "llmqd.socket names no llmq socket"
grep -qx 'FileDescriptorName=http' "$units/llmqd-http.socket" || fail "llmqd-http.socket names no http socket"

# The README's way of enabling it, in an offline root.
DESTDIR=$tmp/root cmake --install "$build" --prefix /usr/local >/dev/null
systemctl --root="$tmp/root" enable llmqd.service >/dev/null 2>&1 ||
	fail "systemctl enable llmqd.service failed"
for link in multi-user.target.wants/llmqd.service sockets.target.wants/llmqd.socket \
	sockets.target.wants/llmqd-http.socket; do
	[ -L "$tmp/root/etc/systemd/system/$link" ] ||
		fail "enabling llmqd.service does not enable $link at boot"
done
echo "units: verified; enabling llmqd.service starts it and both sockets at boot"
