#!/bin/bash
# shellcheck disable=SC2015  # `cond && ok ... || bad ...` is meant: ok always succeeds
# harness/selftest.sh: proves, on this machine, that the end-to-end harness works and measures it.
# Owns only the four containers it boots (selftest-*-PID), which it always powers off, and
# a temp dir. Installs the deps and builds the rootfs if needed (about 20 s the first time).
#
#   harness/selftest.sh        prints one line per check, the timings, and "selftest: N passed, M failed"
#
# Checks: systemd is PID 1 and running; dbus.service active; a socket unit written to
# /etc/systemd/system starts after daemon-reload and answers through socket activation; busctl
# reaches org.freedesktop.systemd1 on the system bus; nginx answers; ssh as vagrant with sudo;
# exit codes propagate; two containers run at once, isolated (units, network, machine id,
# cgroups); nothing is left behind after poweroff.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib/common.sh
. "$HERE/lib/common.sh"        # now_ms, secs
C=$HERE/container.sh
RUN=${CONVERGE_RUN_DIR:-/var/tmp/converge-e2e}
A=selftest-a-$$ B=selftest-b-$$ P1=selftest-p1-$$ P2=selftest-p2-$$   # fresh names: never ours to reuse
TMP=$(mktemp -d)
pass=0 fail=0
declare -A T

ok() { pass=$(( pass + 1 )); echo "ok   $1"; }
bad() { fail=$(( fail + 1 )); echo "FAIL $1${2:+: $2}"; }
expect() {   # expect WHAT WANTED CMD...: CMD's stdout (trimmed) must equal WANTED
  local what=$1 want=$2 got; shift 2
  got=$("$@" 2>"$TMP/err") || true
  got=${got%$'\n'}
  if [ "$got" = "$want" ]; then ok "$what"; else bad "$what" "wanted '$want', got '$got' $(tr '\n' ' ' < "$TMP/err")"; fi
}
run() {      # run WHAT CMD...: CMD must exit 0
  local what=$1; shift
  if "$@" > "$TMP/out" 2>&1; then ok "$what"; else bad "$what" "$(tail -n 5 "$TMP/out" | tr '\n' ' ')"; fi
}

cleanup() {
  local n
  for n in "$A" "$B" "$P1" "$P2"; do "$C" poweroff "$n" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

"$HERE/install-deps.sh"

t=$(now_ms); "$HERE/rootfs.sh" > "$TMP/rootfs.out"; T[rootfs_first]=$(( $(now_ms) - t ))
t=$(now_ms); rootfs=$("$HERE/rootfs.sh" | tail -n 1); T[rootfs_cached]=$(( $(now_ms) - t ))
[ -d "$rootfs" ] && ok "rootfs.sh prints the cached rootfs ($rootfs)" || bad "rootfs.sh output" "$rootfs"

# --- one container, then a second one while the first runs ---------------------------------
t=$(now_ms); LA=$("$C" boot "$A" | tail -n 1); T[boot_a]=$(( $(now_ms) - t ))
t=$(now_ms); LB=$("$C" boot "$B" | tail -n 1); T[boot_b]=$(( $(now_ms) - t ))
expect "leader of $A is its PID 1 (systemd)" systemd cat "/proc/$LA/comm"
expect "is-system-running in $A" running "$C" exec "$A" systemctl is-system-running
expect "is-system-running in $B" running "$C" exec "$B" systemctl is-system-running
expect "dbus.service active" ActiveState=active "$C" exec "$A" systemctl show -p ActiveState dbus.service
expect "busctl reaches org.freedesktop.systemd1" "s \"$(dpkg-query --admindir="$rootfs/var/lib/dpkg" -W -f='${Version}' systemd)\"" \
  "$C" exec "$A" busctl get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 \
  org.freedesktop.systemd1.Manager Version

# a tiny socket-activated unit, copied in from the host
cat > "$TMP/converge-selftest.socket" <<'U'
[Unit]
Description=converge harness selftest socket
[Socket]
ListenStream=127.0.0.1:7777
Accept=yes
U
cat > "$TMP/converge-selftest@.service" <<'U'
[Unit]
Description=converge harness selftest connection
[Service]
ExecStart=/bin/echo hello from socket activation
StandardInput=socket
StandardOutput=socket
U
run "copy-in of two unit files" "$C" copy-in "$A" "$TMP/converge-selftest.socket" /etc/systemd/system/
run "copy-in to an explicit path" "$C" copy-in "$A" "$TMP/converge-selftest@.service" \
  /etc/systemd/system/converge-selftest@.service
t=$(now_ms)
run "daemon-reload + start converge-selftest.socket" \
  "$C" exec "$A" sh -c 'systemctl daemon-reload && systemctl start converge-selftest.socket'
T[socket_unit]=$(( $(now_ms) - t ))
expect "socket unit active" active "$C" exec "$A" systemctl is-active converge-selftest.socket
expect "socket activation answers" "hello from socket activation" \
  "$C" exec "$A" bash -c 'exec 3<>/dev/tcp/127.0.0.1/7777 && cat <&3'
expect "busctl sees the socket unit" 's "active"' "$C" exec "$A" busctl get-property \
  org.freedesktop.systemd1 /org/freedesktop/systemd1/unit/converge_2dselftest_2esocket \
  org.freedesktop.systemd1.Unit ActiveState
expect "nginx answers on 127.0.0.1:80" 200 "$C" exec "$A" curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/
# shellcheck disable=SC2016   # expanded inside, by the remote shell
expect "ssh as vagrant, passwordless sudo" "vagrant root" "$C" ssh "$A" 'echo $(id -un) $(sudo -n id -un)'
"$C" exec "$A" sh -c 'exit 3' && rc=0 || rc=$?
[ "$rc" = 3 ] && ok "exec propagates the exit code" || bad "exec propagates the exit code" "got $rc"

# isolation between the two
expect "$B does not see $A's unit" inactive "$C" exec "$B" systemctl is-active converge-selftest.socket
expect "$B's network does not see $A's port 7777" closed \
  "$C" exec "$B" bash -c '(exec 3<>/dev/tcp/127.0.0.1/7777) 2>/dev/null && echo open || echo closed'
[ "$("$C" exec "$A" cat /etc/machine-id)" != "$("$C" exec "$B" cat /etc/machine-id)" ] &&
  ok "machine ids differ" || bad "machine ids differ"
[ "$(grep '^0::' "/proc/$LA/cgroup")" != "$(grep '^0::' "/proc/$LB/cgroup")" ] &&
  ok "cgroups differ ($(grep '^0::' "/proc/$LA/cgroup"))" || bad "cgroups differ"

t=$(now_ms); "$C" poweroff "$A"; T[poweroff_a]=$(( $(now_ms) - t ))
expect "$B still running after $A's poweroff" running "$C" exec "$B" systemctl is-system-running
t=$(now_ms); "$C" poweroff "$B"; T[poweroff_b]=$(( $(now_ms) - t ))

# --- two booted at the same moment, the second from a full copy of the rootfs ----------------
t=$(now_ms)
CONVERGE_ROOT_MODE=overlay "$C" boot "$P1" > "$TMP/p1" 2>&1 & j1=$!
CONVERGE_ROOT_MODE=copy "$C" boot "$P2" > "$TMP/p2" 2>&1 & j2=$!
r1=0; r2=0; wait $j1 || r1=$?; wait $j2 || r2=$?
T[boot_parallel_2]=$(( $(now_ms) - t ))
[ $r1 = 0 ] && [ $r2 = 0 ] && ok "two boots at once (overlay and copy)" || bad "two boots at once" "$(cat "$TMP/p1" "$TMP/p2")"
grep -h "is running" "$TMP/p1" "$TMP/p2" || true
expect "nginx in the copied root" active "$C" exec "$P2" systemctl is-active nginx
t=$(now_ms); "$C" poweroff "$P1" & j1=$!; "$C" poweroff "$P2"; wait $j1; T[poweroff_parallel_2]=$(( $(now_ms) - t ))

# --- nothing left behind ---------------------------------------------------------------------
left=""
for n in "$A" "$B" "$P1" "$P2"; do
  [ ! -e "$RUN/$n" ] || left+=" $RUN/$n"
  [ ! -e "$RUN/.$n.lock" ] || left+=" $RUN/.$n.lock"
done
for p in "$LA" "$LB"; do [ ! -e "/proc/$p" ] || [ "$(cat "/proc/$p/comm" 2>/dev/null)" != systemd ] || left+=" pid $p"; done
left+=$(findmnt -rn -o TARGET | grep -F "$RUN/selftest-" | tr '\n' ' ' || true)
left+=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 3 -type d -path '*converge-e2e/selftest-*' 2>/dev/null | tr '\n' ' ' || true)
[ -z "${left// /}" ] && ok "poweroff leaves no directory, mount, process or cgroup" || bad "left behind" "$left"

echo
echo "timings (wall seconds):"
for k in rootfs_first rootfs_cached boot_a boot_b socket_unit poweroff_a poweroff_b boot_parallel_2 poweroff_parallel_2; do
  printf '  %-20s %s\n' "$k" "$(secs "${T[$k]}")"
done
echo
echo "selftest: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
