#!/bin/bash
# harness/container.sh: owns the throw-away systemd-nspawn containers of the end-to-end tests:
# their root directories, nspawn processes, cgroups and state, all under
# ${CONVERGE_RUN_DIR:-/var/tmp/converge-e2e}/NAME. The rootfs they start from belongs to rootfs.sh.
#
#   container.sh boot NAME             give NAME a fresh root made from the cached rootfs, boot
#                                      it (systemd as PID 1, its own system bus, loopback-only
#                                      network), wait until `systemctl is-system-running` says
#                                      running or degraded (30 s at most), print the leader pid
#                                      (the container's PID 1, as the host numbers it)
#   container.sh exec NAME CMD...      run CMD inside (all namespaces, root, clean environment);
#                                      stdin/stdout/stderr pass through, exit code propagates
#   container.sh copy-in NAME SRC DEST copy a host file or directory to the absolute path DEST
#                                      inside (DEST/ or an existing directory: keep SRC's name)
#   container.sh ssh NAME [ARGS...]    the host's ssh client, in the container's network
#                                      namespace, to vagrant@127.0.0.1 with the harness key
#   container.sh leader NAME           print the leader pid (e.g. for `nsenter -t PID -n CMD`)
#   container.sh poweroff NAME         `systemctl poweroff` inside, wait for nspawn to exit, kill
#                                      the recorded pids only if it has not after a timeout,
#                                      delete its root. Succeeds when NAME does not exist.
#   container.sh list                  the containers that have state here, and whether they run
#
# Several containers may run at once under different NAMEs: each has its own root, network
# namespace and cgroup; boot and poweroff of one NAME are serialized by a lock file. PID 1 of the host need not be systemd (nspawn runs with --register=no
# --keep-unit). Processes are only ever killed by the pids recorded in the state directory,
# checked against their start time. Needs root, harness/install-deps.sh and harness/rootfs.sh.
#
# The fresh root (CONVERGE_ROOT_MODE):
#   overlay  (default) an overlayfs mount at NAME/root: the cached rootfs read-only below, NAME/upper
#            above, so only what the test writes touches the disk; made in a millisecond
#   copy     `cp -a --reflink=auto` of the rootfs into NAME/root: no mount, but 0.5 to 11 s here
#   auto     overlay, or copy when the overlay mount fails (e.g. inside some containers)
#
# Environment: CONVERGE_RUN_DIR, CONVERGE_CACHE (see rootfs.sh), CONVERGE_ROOT_MODE (overlay),
# CONVERGE_BOOT_TIMEOUT (30 s), CONVERGE_POWEROFF_TIMEOUT (20 s), CONVERGE_KEEP_FAILED=1 (keep
# the state directory of a failed boot for inspection).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib/common.sh
. "$HERE/lib/common.sh"
# shellcheck source=SCRIPTDIR/lib/machine.sh
. "$HERE/lib/machine.sh"
LOG_PREFIX=container MACHINE=container CONSOLE_LOG=nspawn.log NAME_LOCK_WAIT=120
RUN=${CONVERGE_RUN_DIR:-/var/tmp/converge-e2e}
BOOT_TIMEOUT=${CONVERGE_BOOT_TIMEOUT:-30}
POWEROFF_TIMEOUT=${CONVERGE_POWEROFF_TIMEOUT:-20}
ROOT_MODE=${CONVERGE_ROOT_MODE:-overlay}
CGROUP_PARENT=converge-e2e

find_leader() {  # $1 nspawn pid -> its child that is PID 1 of a new pid namespace
  local c ns
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    ns=$(awk '$1 == "NSpid:" { print $NF }' "/proc/$c/status" 2>/dev/null) || continue
    [ "$ns" = 1 ] && [ "$(awk '$1 == "NSpid:" { print NF }' "/proc/$c/status")" -gt 2 ] &&
      { echo "$c"; return 0; }
  done
  return 1
}

# --- cgroups: nspawn --keep-unit nests the container below the cgroup nspawn runs in, as
# .../payload (and itself as .../supervisor). Started from the same cgroup, two containers would
# share one tree, so each nspawn is first moved to a cgroup of its own: <cur>/converge-e2e/NAME in
# the name=systemd hierarchy (cgroup v1/hybrid hosts) and in the cgroup2 hierarchy.
cgroup_dirs() {  # $1 NAME -> one directory per hierarchy
  local line mnt post fstype super cur
  while IFS= read -r line; do
    mnt=$(cut -d' ' -f5 <<<"$line")
    post=${line#* - }; fstype=${post%% *}; super=${post##* }
    case $fstype in
      cgroup2) cur=$(sed -n 's/^0:://p' /proc/self/cgroup) ;;
      cgroup) [[ ,$super, == *,name=systemd,* ]] || continue
              cur=$(sed -n 's/^[0-9]*:name=systemd://p' /proc/self/cgroup) ;;
      *) continue ;;
    esac
    echo "$mnt${cur%/}/$CGROUP_PARENT/$1"
  done < /proc/self/mountinfo
}
remove_cgroups() {   # $1 state dir; removes the (empty) cgroups recorded at boot
  local d i
  [ -f "$1/cgroups" ] || return 0
  while IFS= read -r d; do
    # the kernel may report a cgroup busy for a moment after its last process exited
    for (( i = 0; i < 30 && ${#d} > 0; i++ )); do
      [ -d "$d" ] || break
      find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || sleep 0.1
    done
    [ ! -d "$d" ] || log "warning: cgroup $d is not empty, left in place"
    rmdir "$(dirname "$d")" 2>/dev/null || true      # the shared parent, once unused
  done < "$1/cgroups"
}

request_poweroff() {   # $1 state dir, $2 nspawn pid
  local leader
  leader=$(recorded_pid "$1/leader.pid" || find_leader "$2" || true)
  if [ -n "$leader" ]; then
    # --no-block: without it, systemctl may see the bus connection reset by the shutdown
    nsenter -t "$leader" -a systemctl --no-block poweroff >/dev/null 2>&1 ||
      kill -s SIGRTMIN+4 "$leader" 2>/dev/null || true     # systemd: SIGRTMIN+4 = poweroff
  else
    kill -TERM "$2" 2>/dev/null || true      # nspawn then asks the container to shut down
  fi
}

# Stop the container whose state is in $1 (if it runs) and delete its state directory.
teardown() {
  local dir=$1 npid leader i
  if npid=$(recorded_pid "$dir/nspawn.pid"); then
    # asked again every second: a container still booting may not have heard the first request
    for (( i = 0; i < POWEROFF_TIMEOUT * 10; i++ )); do
      recorded_pid "$dir/nspawn.pid" >/dev/null || break
      (( i % 10 )) || request_poweroff "$dir" "$npid"
      sleep 0.1
    done
    if recorded_pid "$dir/nspawn.pid" >/dev/null; then
      log "$(basename "$dir") did not power off within ${POWEROFF_TIMEOUT} s: killing the recorded pids"
      # SIGKILL to PID 1 of a pid namespace kills every process in it
      leader=$(recorded_pid "$dir/leader.pid" || find_leader "$npid" || true)
      [ -z "$leader" ] || kill -KILL "$leader" 2>/dev/null || true
      for (( i = 0; i < 50; i++ )); do recorded_pid "$dir/nspawn.pid" >/dev/null || break; sleep 0.1; done
      if npid=$(recorded_pid "$dir/nspawn.pid"); then kill -KILL "$npid" 2>/dev/null || true; sleep 0.2; fi
    fi
  fi
  remove_cgroups "$dir"
  if mountpoint -q "$dir/root" 2>/dev/null; then
    umount "$dir/root" 2>/dev/null || {
      log "warning: $dir/root is busy (a host process uses it?): detaching it lazily"
      umount -l "$dir/root"; }
  fi
  remove_tree "$dir/root"
  rm -rf --one-file-system -- "$dir"
}

# --- the hooks of lib/machine.sh ---------------------------------------------------------------
machine_alive() { recorded_pid "$1/nspawn.pid" >/dev/null; }
machine_who() { echo "leader $(cut -d' ' -f1 "$1/leader.pid" 2>/dev/null)"; }
machine_status() { machine_alive "$1" && echo "leader=$(recorded_pid "$1/leader.pid" || echo '?')"; }
leader_of() {   # $1 state dir of a running container -> its leader pid, or die
  recorded_pid "$1/leader.pid" || die "container '$(basename "$1")' has no running leader"
}
machine_sh() {   # $1 state dir, $2 script, rest: its arguments; run by sh inside, as root
  local leader; leader=$(leader_of "$1"); shift
  # paths are resolved inside the container (its symlinks cannot point us at the host's files)
  nsenter -t "$leader" -a -- /bin/sh -c "$1" sh "${@:2}"
}
discard_failed() { teardown "$1"; }
keep_failed() {
  local npid
  if npid=$(recorded_pid "$1/nspawn.pid"); then kill -TERM "$npid" 2>/dev/null || true; fi
}
running_leader() {   # $1 NAME -> leader pid, or die with a clear message
  local dir; dir=$(running_dir "$1") || exit
  leader_of "$dir"
}

make_root() {   # $1 cached rootfs, $2 state dir -> $2/root, and $2/root-mode says how
  local rootfs=$1 dir=$2
  case $ROOT_MODE in
    overlay|auto)
      mkdir -p "$dir/upper" "$dir/work" "$dir/root"
      if mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"; then
        echo overlay > "$dir/root-mode"; return 0
      fi
      [ "$ROOT_MODE" = auto ] || die "cannot mount an overlay on $dir/root (CONVERGE_ROOT_MODE=copy avoids it)"
      log "overlay mount failed: copying the rootfs instead"
      rm -rf -- "$dir/upper" "$dir/work" "$dir/root" ;;
    copy) ;;
    *) die "CONVERGE_ROOT_MODE must be overlay, copy or auto, not '$ROOT_MODE'" ;;
  esac
  cp -a --reflink=auto "$rootfs" "$dir/root"
  echo copy > "$dir/root-mode"
}

cmd_boot() {
  [ $# -eq 1 ] || die "usage: $0 boot NAME"
  local name=$1 dir rootfs npid leader state="" t0 t1 deadline
  begin_boot "$name"
  dir=$BOOTING_DIR

  rootfs=$("$HERE/rootfs.sh" | tail -n 1)
  [ -f "$rootfs/etc/converge-e2e-rootfs" ] || die "rootfs.sh returned no rootfs"
  t0=$(now_ms)
  make_root "$rootfs" "$dir"
  t1=$(now_ms)
  cgroup_dirs "$name" > "$dir/cgroups"

  # The subshell moves itself to the container's own cgroups, then becomes nspawn (setsid does not
  # fork here: a background job of a script is no process group leader), so $! is nspawn's pid.
  (
    # nspawn outlives this script: it must hold neither the lock of NAME (fd 8) nor any pipe the
    # caller passed down (the caller would wait for its end forever)
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      [ "$fd" -le 2 ] || eval "exec $fd>&-" 2>/dev/null || true
    done
    while IFS= read -r d; do
      if ! { mkdir -p "$d" && echo "$BASHPID" > "$d/cgroup.procs"; }; then
        echo "cannot join cgroup $d" >&2; exit 1
      fi
    done < "$dir/cgroups"
    # TERM=dumb: plain boot messages in nspawn.log, no colours
    exec env TERM=dumb setsid systemd-nspawn --boot --directory="$dir/root" --machine="$name" \
      --register=no --keep-unit --private-network --console=read-only
  ) > "$dir/nspawn.log" 2>&1 < /dev/null &
  npid=$!
  record_pid "$npid" "$dir/nspawn.pid"

  deadline=$(( t1 + BOOT_TIMEOUT * 1000 ))
  leader=""
  while :; do
    recorded_pid "$dir/nspawn.pid" >/dev/null || { log "systemd-nspawn exited during boot"; return 1; }
    if [ -z "$leader" ] && leader=$(find_leader "$npid"); then
      record_pid "$leader" "$dir/leader.pid"
    fi
    if [ -n "$leader" ]; then
      state=$(nsenter -t "$leader" -a systemctl is-system-running 2>/dev/null || true)
      case $state in running|degraded) break ;; esac
    fi
    [ "$(now_ms)" -lt "$deadline" ] ||
      { log "'$name' not running after ${BOOT_TIMEOUT} s (state: ${state:-no answer})"; return 1; }
    sleep 0.05
  done
  trap - EXIT
  log "'$name' is $state: root ($(cat "$dir/root-mode")) $(secs $(( t1 - t0 ))) s, boot $(secs $(( $(now_ms) - t1 ))) s, leader $leader"
  if [ "$state" = degraded ]; then
    log "failed units in '$name':"
    nsenter -t "$leader" -a systemctl --failed --no-legend --plain >&2 || true
  fi
  echo "$leader"
}

cmd_exec() {
  [ $# -ge 2 ] || die "usage: $0 exec NAME CMD [ARGS...]"
  local leader; leader=$(running_leader "$1"); shift
  # nsenter forks into the pid namespace, waits, and exits with the command's status
  exec nsenter -t "$leader" -a -- "${CLEAN_ENV[@]}" TERM="${TERM:-dumb}" "$@"
}

cmd_ssh() {
  [ $# -ge 1 ] || die "usage: $0 ssh NAME [SSH ARGS...]"
  local leader; leader=$(running_leader "$1"); shift
  exec nsenter -t "$leader" -n -- ssh "${SSH_OPTS[@]}" vagrant@127.0.0.1 "$@"
}

cmd_leader() { [ $# -eq 1 ] || die "usage: $0 leader NAME"; running_leader "$1"; }

run_subcommand "boot exec copy-in ssh poweroff" "$@"
