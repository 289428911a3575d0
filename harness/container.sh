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
RUN=${CONVERGE_RUN_DIR:-/var/tmp/converge-e2e}
CACHE=${CONVERGE_CACHE:-/var/cache/converge-e2e}
BOOT_TIMEOUT=${CONVERGE_BOOT_TIMEOUT:-30}
POWEROFF_TIMEOUT=${CONVERGE_POWEROFF_TIMEOUT:-20}
ROOT_MODE=${CONVERGE_ROOT_MODE:-overlay}
CGROUP_PARENT=converge-e2e
INNER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "container: $*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2; }
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $(( t / 1000 )); }
secs() { printf '%d.%02d' $(( $1 / 1000 )) $(( $1 % 1000 / 10 )); }   # ms -> "s.cc"

check_name() {   # a machine name is a hostname; it also names a directory
  [[ ${1:-} =~ ^[A-Za-z0-9][A-Za-z0-9-]{0,62}$ ]] ||
    die "invalid NAME '${1:-}': use letters, digits and '-', at most 63 characters"
}

# --- processes, identified by pid AND start time so that a reused pid is never signalled -------
proc_start() {   # $1 pid -> start time in clock ticks since boot (field 22 of /proc/PID/stat);
                 # fails when there is no such process or it has exited and is only a zombie
                 # (PID 1 of this machine may take a second to reap the orphans it inherits)
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }                                   # drop "pid (comm) ": comm may contain spaces
  # shellcheck disable=SC2086
  set -- $s
  case $1 in Z|X|x) return 1 ;; esac            # field 3: state
  echo "${20}"
}
record_pid() { echo "$1 $(proc_start "$1")" > "$2"; }     # $1 pid, $2 file
recorded_pid() {   # $1 file -> its pid if that process still runs, else fail
  local pid start
  [ -f "$1" ] && read -r pid start < "$1" || return 1
  [ -n "$pid" ] && [ "$(proc_start "$pid" 2>/dev/null)" = "$start" ] || return 1
  echo "$pid"
}

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

remove_tree() {  # refuse to descend into mounts: a container's mounts live in its own namespace
  local d=$1
  [ -e "$d" ] || return 0
  if findmnt -rn -o TARGET | grep -q -F -- "$(realpath -- "$d")/"; then
    log "not removing $d: something is mounted below it"; return 1
  fi
  rm -rf --one-file-system -- "$d"
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

state_dir() { check_name "$1"; echo "$RUN/$1"; }

lock_name() {   # $1 NAME: serialize boot/poweroff of one NAME (fd 8, released at exit)
  local f=$RUN/.$1.lock
  mkdir -p "$RUN"
  while :; do
    exec 8>>"$f"
    flock -w 120 8 || die "another boot or poweroff of '$1' holds $f"
    # the holder before us may have deleted the file (unlock_name): then lock the new one
    [ "$(stat -c %d:%i "$f" 2>/dev/null)" != "$(stat -L -c %d:%i "/proc/$$/fd/8")" ] || return 0
    exec 8>&-
  done
}
unlock_name() { rm -f "$RUN/.$1.lock"; exec 8>&-; }   # $1 NAME: when NAME is gone

running_leader() {   # $1 NAME -> leader pid, or die with a clear message
  local dir leader
  dir=$(state_dir "$1")
  [ -d "$dir" ] || die "no container '$1' (boot it first: $0 boot $1)"
  recorded_pid "$dir/nspawn.pid" >/dev/null || die "container '$1' is not running (see $dir/nspawn.log)"
  leader=$(recorded_pid "$dir/leader.pid") || die "container '$1' has no running leader"
  echo "$leader"
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
  dir=$(state_dir "$name")
  lock_name "$name"
  if ! mkdir "$dir" 2>/dev/null; then
    recorded_pid "$dir/nspawn.pid" >/dev/null &&
      die "container '$name' is already running (leader $(cut -d' ' -f1 "$dir/leader.pid" 2>/dev/null))"
    log "removing stale state of '$name'"
    teardown "$dir"
    mkdir "$dir"
  fi
  # from here on, a failed boot stops what it started and deletes the copy
  BOOTING_NAME=$name BOOTING_DIR=$dir
  trap boot_failed EXIT

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

boot_failed() {   # EXIT trap of a boot that did not reach running/degraded
  local rc=$? name=$BOOTING_NAME dir=$BOOTING_DIR
  [ $rc -ne 0 ] || rc=1
  log "boot of '$name' failed; last lines of $dir/nspawn.log:"
  tail -n 30 "$dir/nspawn.log" 2>/dev/null | tr -d '\r' | sed 's/^/  | /' >&2 || true
  if [ "${CONVERGE_KEEP_FAILED:-0}" = 1 ]; then
    local npid
    if npid=$(recorded_pid "$dir/nspawn.pid"); then kill -TERM "$npid" 2>/dev/null || true; fi
    log "kept $dir (CONVERGE_KEEP_FAILED=1); remove it with: $0 poweroff $name"
  else
    teardown "$dir" || true
    unlock_name "$name"
  fi
  exit "$rc"
}

cmd_exec() {
  [ $# -ge 2 ] || die "usage: $0 exec NAME CMD [ARGS...]"
  local leader; leader=$(running_leader "$1"); shift
  # nsenter forks into the pid namespace, waits, and exits with the command's status
  exec nsenter -t "$leader" -a -- env -i PATH="$INNER_PATH" HOME=/root USER=root LOGNAME=root \
    LANG=C.UTF-8 TERM="${TERM:-dumb}" "$@"
}

cmd_copy_in() {
  [ $# -eq 3 ] || die "usage: $0 copy-in NAME SRC DEST"
  local leader src=$2 dest=$3
  leader=$(running_leader "$1")
  [[ $dest == /* ]] || die "DEST must be an absolute path inside the container: $dest"
  [ -e "$src" ] || die "no such file: $src"
  # Paths are resolved inside the container (its symlinks cannot point us at the host's files).
  if [ -d "$src" ]; then
    tar -C "$src" --owner=0 --group=0 --numeric-owner -cf - . |
      nsenter -t "$leader" -a -- /bin/sh -c 'mkdir -p -- "$1" && tar -C "$1" -xf -' sh "$dest"
  else
    nsenter -t "$leader" -a -- /bin/sh -c '
      d=$1
      case $d in */) d=$d$3 ;; *) [ -d "$d" ] && d=$d/$3 ;; esac
      mkdir -p -- "$(dirname -- "$d")" &&
      cat > "$d.converge-tmp" && chmod "$2" "$d.converge-tmp" && mv -f -- "$d.converge-tmp" "$d"
    ' sh "$dest" "$(stat -c %a "$src")" "$(basename -- "$src")" < "$src"
  fi
}

cmd_ssh() {
  [ $# -ge 1 ] || die "usage: $0 ssh NAME [SSH ARGS...]"
  local leader; leader=$(running_leader "$1"); shift
  exec nsenter -t "$leader" -n -- ssh -i "$CACHE/ssh/id_ed25519" -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=10 \
    vagrant@127.0.0.1 "$@"
}

cmd_poweroff() {
  [ $# -eq 1 ] || die "usage: $0 poweroff NAME"
  local dir t0; dir=$(state_dir "$1")
  [ -d "$dir" ] || { log "no container '$1': nothing to power off"; return 0; }
  lock_name "$1"
  [ -d "$dir" ] || { unlock_name "$1"; log "'$1' was powered off meanwhile"; return 0; }
  t0=$(now_ms)
  teardown "$dir"
  unlock_name "$1"
  log "'$1' powered off and removed in $(secs $(( $(now_ms) - t0 ))) s"
}

cmd_list() {
  local d
  [ -d "$RUN" ] || return 0
  for d in "$RUN"/*/; do
    [ -d "$d" ] || continue
    d=${d%/}
    if recorded_pid "$d/nspawn.pid" >/dev/null; then
      echo "$(basename "$d") running leader=$(recorded_pid "$d/leader.pid" || echo '?')"
    else
      echo "$(basename "$d") stopped (stale: '$0 poweroff $(basename "$d")' removes it)"
    fi
  done
}

[ $# -ge 1 ] || { usage; exit 2; }
sub=$1; shift
case $sub in
  boot|exec|copy-in|ssh|poweroff) [ "$(id -u)" -eq 0 ] || die "must run as root" ;;
esac
case $sub in
  boot) cmd_boot "$@" ;;
  exec) cmd_exec "$@" ;;
  copy-in) cmd_copy_in "$@" ;;
  ssh) cmd_ssh "$@" ;;
  leader) [ $# -eq 1 ] || die "usage: $0 leader NAME"; running_leader "$1" ;;
  poweroff) cmd_poweroff "$@" ;;
  list) cmd_list ;;
  -h|--help|help) usage ;;
  *) usage; die "unknown subcommand: $sub" ;;
esac
