#!/bin/bash
# harness/vm/libvirt.sh: owns the libvirt daemons of the Vagrant tier, which run in a network
# namespace of their own, and everything they make: the namespace, the VMs and networks defined
# while they run, a transient storage pool `default`, and /dev/kvm's group and mode while they run.
# State: ${CONVERGE_VM_RUN_DIR:-/var/tmp/converge-e2e-vm}/.libvirt/
#
#   libvirt.sh start        make the network namespace (loopback up, nothing else: whatever
#                           libvirt builds in it, bridge, NAT, dnsmasq, reaches nothing outside),
#                           start virtlogd and libvirtd in it, wait until libvirtd answers, create
#                           the pool; print the namespace's name. Fails while the daemons of
#                           another start run and the process that started them (its owner: the
#                           caller, or CONVERGE_LIBVIRT_OWNER) lives; stops them first when it died.
#   libvirt.sh exec CMD...  run CMD in the namespace (`vagrant` must: it reaches the VM's address)
#   libvirt.sh stop         destroy and undefine the domains and networks that were not there at
#                           start, delete the pool, stop libvirtd and virtlogd by their recorded
#                           pids, end what still runs in the namespace (by pid), delete the
#                           namespace, put /dev/kvm's group and mode back. Succeeds when nothing runs.
#
# There is no systemd on these machines to start libvirtd, and only one libvirtd (system mode,
# /run/libvirt/libvirt-sock) can run on a machine: start and stop are serialized by a lock, and a
# second start fails while the first one's daemons run.
# /dev/kvm: this machine's is root:root 0600 (no udev rules). libvirt then finds KVM "not usable by
# libvirt-qemu" while its cached capabilities say KVM, and probes QEMU again, about 4 s each, a
# dozen times, on every domain definition (47 s for one `virsh define`). While the daemons run
# /dev/kvm is root:kvm 0660, as Debian's udev rule makes it; stop restores what it was.
# Environment: CONVERGE_VM_RUN_DIR, CONVERGE_LIBVIRT_NETNS (converge-e2e-libvirt). Needs root and
# harness/vm/install-deps.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$HERE/../lib/common.sh"
LOG_PREFIX=vm/libvirt
RUN=${CONVERGE_VM_RUN_DIR:-/var/tmp/converge-e2e-vm}
STATE=$RUN/.libvirt
NETNS=${CONVERGE_LIBVIRT_NETNS:-converge-e2e-libvirt}
POOL=default
URI=qemu:///system

# $STATE/NAME.rec: "pid starttime" of the owner and of each daemon (the daemons delete their own
# pid files when they exit)
record() { record_pid "$2" "$STATE/$1.rec"; }      # $1 name, $2 pid
daemon_pid() { recorded_pid "$STATE/$1.rec"; }     # $1 name -> its pid if it still runs
stop_pid() {   # $1 daemon name: TERM, wait up to 10 s, then KILL
  local pid i
  pid=$(daemon_pid "$1") || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for (( i = 0; i < 100; i++ )); do daemon_pid "$1" >/dev/null || return 0; sleep 0.1; done
  log "$1 (pid $pid) did not stop within 10 s: killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

in_ns() { ip netns exec "$NETNS" "$@"; }
virsh_() { virsh -q -c "$URI" "$@"; }

lock() {
  mkdir -p "$STATE"
  exec 7>"$RUN/.libvirt.lock"
  flock -w 600 7 || die "another start or stop holds $RUN/.libvirt.lock"
}

cmd_start() {
  [ $# -eq 0 ] || die "usage: $0 start"
  lock
  if daemon_pid libvirtd >/dev/null || daemon_pid virtlogd >/dev/null; then
    daemon_pid owner >/dev/null &&
      die "the libvirtd of another test (pid $(daemon_pid owner)) runs: only one at a time"
    log "the test that started the running libvirtd is gone: stopping what it left"
    exec 7>&-
    "$0" stop
    lock
  fi
  [ ! -S /run/libvirt/libvirt-sock ] || ! virsh -c "$URI" version >/dev/null 2>&1 ||
    die "a libvirtd that this harness did not start already runs"
  rm -f "$STATE"/*.pid "$STATE"/*.rec
  # the owner: the process that ran this script (the test); a later start may clean up after an
  # owner that died without stopping
  record owner "${CONVERGE_LIBVIRT_OWNER:-$PPID}"
  trap 'log "start failed: stopping what it started"; exec 7>&-; "$0" stop || true' EXIT

  if [ -e /dev/kvm ] && [ ! -f "$STATE/kvm-mode" ]; then
    stat -c '%g %a' /dev/kvm > "$STATE/kvm-mode"
    getent group kvm >/dev/null || die "no group kvm (libvirt-daemon-system makes it)"
    chgrp kvm /dev/kvm && chmod 660 /dev/kvm
  fi
  ip netns list | grep -qw "^$NETNS" || ip netns add "$NETNS"
  echo "$NETNS" > "$STATE/netns"
  in_ns ip link set lo up

  # -d: each daemonizes with its stdio on /dev/null; fd 7 (the lock) must not go with them
  local d i
  for d in virtlogd libvirtd; do
    in_ns "$d" -d -p "$STATE/$d.pid" 7>&-
    for (( i = 0; i < 100; i++ )); do [ ! -s "$STATE/$d.pid" ] || break; sleep 0.1; done
    [ -s "$STATE/$d.pid" ] || die "$d wrote no pid file"
    record "$d" "$(tr -dc 0-9 < "$STATE/$d.pid")"
  done
  local t0=$SECONDS
  until virsh -c "$URI" version >/dev/null 2>&1; do
    daemon_pid libvirtd >/dev/null || die "libvirtd exited (see its messages in the journal or syslog)"
    (( SECONDS - t0 < 120 )) || die "libvirtd did not answer within 120 s"
    sleep 0.5
  done
  virsh_ list --all --name | sort > "$STATE/domains.before"
  virsh_ net-list --all --name | sort > "$STATE/networks.before"
  if ! virsh_ pool-info "$POOL" >/dev/null 2>&1; then
    mkdir -p "$STATE/pool"
    virsh_ pool-create-as "$POOL" dir --target "$STATE/pool" >/dev/null
    echo "$POOL" > "$STATE/pool-created"
  fi
  trap - EXIT
  log "libvirtd (pid $(daemon_pid libvirtd)) answers after $(( SECONDS - t0 )) s in network namespace $NETNS"
  echo "$NETNS"
}

cmd_stop() {
  [ $# -eq 0 ] || die "usage: $0 stop"
  lock
  local d n
  if daemon_pid libvirtd >/dev/null && virsh -c "$URI" version >/dev/null 2>&1; then
    for d in $(virsh_ list --all --name | sort | comm -23 - "$STATE/domains.before" 2>/dev/null); do
      log "removing domain $d"
      virsh_ destroy "$d" >/dev/null 2>&1 || true
      virsh_ undefine "$d" --nvram >/dev/null 2>&1 || virsh_ undefine "$d" >/dev/null 2>&1 || true
    done
    for n in $(virsh_ net-list --all --name | sort | comm -23 - "$STATE/networks.before" 2>/dev/null); do
      log "removing network $n"
      virsh_ net-destroy "$n" >/dev/null 2>&1 || true
      virsh_ net-undefine "$n" >/dev/null 2>&1 || true
    done
    if [ -f "$STATE/pool-created" ]; then virsh_ pool-destroy "$POOL" >/dev/null 2>&1 || true; fi
  fi
  stop_pid libvirtd
  stop_pid virtlogd
  if ip netns list | grep -qw "^$NETNS"; then
    # whatever still runs in the namespace was started through it (dnsmasq, vagrant's ssh
    # tunnels, a QEMU): end it by pid
    local pids i sig
    for (( i = 0; i < 50; i++ )); do
      pids=$(ip netns pids "$NETNS" 2>/dev/null | tr '\n' ' ')
      [ -n "${pids// }" ] || break
      (( i )) || log "ending what still runs in $NETNS: $pids"
      sig=-TERM; (( i < 30 )) || sig=-KILL
      # shellcheck disable=SC2086
      kill "$sig" $pids 2>/dev/null || true
      sleep 0.2
    done
    ip netns del "$NETNS"
  fi
  if [ -f "$STATE/kvm-mode" ] && [ -e /dev/kvm ]; then
    read -r gid mode < "$STATE/kvm-mode"
    chgrp "$gid" /dev/kvm && chmod "$mode" /dev/kvm
  fi
  rm -rf --one-file-system -- "$STATE"
  log "stopped"
}

cmd_exec() { [ $# -ge 1 ] || die "usage: $0 exec CMD [ARGS...]"; exec ip netns exec "$NETNS" "$@"; }

run_subcommand "start stop exec" "$@"
