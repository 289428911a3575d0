#!/bin/bash
# harness/vm/vm.sh: owns the throw-away QEMU VMs of the end-to-end tests (software emulation, TCG):
# their disk overlays, QEMU processes and state, all under
# ${CONVERGE_VM_RUN_DIR:-/var/tmp/converge-e2e-vm}/NAME. The image they boot belongs to image.sh.
#
#   vm.sh boot NAME             a fresh copy-on-write disk over the cached image, QEMU started in
#                               the background (direct kernel boot, user-mode network with only
#                               the forwarded ports below), wait until ssh answers and systemd is
#                               up (running or degraded); print the host's ssh port
#   vm.sh exec NAME CMD...      run CMD inside as root over ssh (clean environment); stdin, stdout
#                               and stderr pass through, the exit code propagates (255: ssh failed)
#   vm.sh copy-in NAME SRC DEST copy a host file or directory to the absolute path DEST inside
#                               (DEST/ or an existing directory: keep SRC's name)
#   vm.sh ssh NAME [ARGS...]    the host's ssh client to vagrant@ the VM, with the harness key
#   vm.sh port NAME GUESTPORT   the host port (on 127.0.0.1) forwarded to GUESTPORT (22 or 80)
#   vm.sh poweroff NAME         `systemctl poweroff` inside, wait for QEMU to exit, kill the
#                               recorded pid only if it has not after a timeout, delete the state.
#                               Succeeds when NAME does not exist.
#   vm.sh list                  the VMs that have state here, and whether they run
#
# The network is QEMU's user-mode network with restrict=on: the guest reaches nothing outside
# (no route to the host or beyond); the host reaches the guest's ssh (22) and http (80) only
# through ports forwarded from 127.0.0.1. Several VMs run at once under different NAMEs, each with
# its own ports. QEMU is only ever signalled by the pid it wrote, checked against its start time.
# KVM is used only where it is real hardware virtualization (vmx/svm and no kvm_pvm module);
# CONVERGE_VM_ACCEL=tcg|kvm overrides that.
#
# Environment: CONVERGE_VM_RUN_DIR, CONVERGE_CACHE (see image.sh), CONVERGE_VM_ACCEL,
# CONVERGE_VM_CPUS (2), CONVERGE_VM_MEMORY (MiB, 1536), CONVERGE_VM_BOOT_TIMEOUT (300 s),
# CONVERGE_VM_POWEROFF_TIMEOUT (60 s), CONVERGE_KEEP_FAILED=1 (keep a failed boot's state).
# Needs root, harness/vm/install-deps.sh and harness/vm/image.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUN=${CONVERGE_VM_RUN_DIR:-/var/tmp/converge-e2e-vm}
CACHE=${CONVERGE_CACHE:-/var/cache/converge-e2e}
BOOT_TIMEOUT=${CONVERGE_VM_BOOT_TIMEOUT:-300}
POWEROFF_TIMEOUT=${CONVERGE_VM_POWEROFF_TIMEOUT:-60}
CPUS=${CONVERGE_VM_CPUS:-2}
MEMORY=${CONVERGE_VM_MEMORY:-1536}
INNER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
SSH_OPTS=(-i "$CACHE/ssh/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
          -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=10
          -o ServerAliveCountMax=6)

log() { echo "vm: $*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2; }
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $(( t / 1000 )); }
secs() { printf '%d.%02d' $(( $1 / 1000 )) $(( $1 % 1000 / 10 )); }   # ms -> "s.cc"

check_name() {
  [[ ${1:-} =~ ^[A-Za-z0-9][A-Za-z0-9-]{0,62}$ ]] ||
    die "invalid NAME '${1:-}': use letters, digits and '-', at most 63 characters"
}
state_dir() { check_name "$1"; echo "$RUN/$1"; }

# --- QEMU's pid, identified by pid AND start time (as container.sh does) ----------------------
proc_start() {   # $1 pid -> start time (field 22 of /proc/PID/stat); fails for none or a zombie
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  case $1 in Z|X|x) return 1 ;; esac
  echo "${20}"
}
recorded_pid() {   # $1 state dir -> QEMU's pid if that process still runs, else fail
  local pid start
  [ -f "$1/qemu.pid" ] && [ -f "$1/qemu.start" ] || return 1
  pid=$(tr -dc 0-9 < "$1/qemu.pid"); start=$(cat "$1/qemu.start")
  [ -n "$pid" ] && [ "$(proc_start "$pid" 2>/dev/null)" = "$start" ] || return 1
  echo "$pid"
}

lock_name() {   # $1 NAME: serialize boot/poweroff of one NAME (fd 8, released at exit)
  local f=$RUN/.$1.lock
  mkdir -p "$RUN"
  while :; do
    exec 8>>"$f"
    flock -w 300 8 || die "another boot or poweroff of '$1' holds $f"
    [ "$(stat -c %d:%i "$f" 2>/dev/null)" != "$(stat -L -c %d:%i "/proc/$$/fd/8")" ] || return 0
    exec 8>&-
  done
}
unlock_name() { rm -f "$RUN/.$1.lock"; exec 8>&-; }

ssh_port() { cat "$1/port-22" 2>/dev/null || die "no VM '$(basename "$1")' (boot it first)"; }
as_root() {   # $1 state dir, rest: ssh arguments -> ssh root@ the VM
  local dir=$1; shift
  ssh "${SSH_OPTS[@]}" -p "$(ssh_port "$dir")" root@127.0.0.1 "$@"
}

pick_accel() {
  if [ -n "${CONVERGE_VM_ACCEL:-}" ]; then echo "$CONVERGE_VM_ACCEL"; return; fi
  # /dev/kvm on these build machines is a nested PVM backend: a stock kernel runs about 1000x
  # slower under it than under TCG and never boots. Real KVM shows vmx or svm and no kvm_pvm.
  if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo && [ ! -d /sys/module/kvm_pvm ]; then
    echo kvm; else echo tcg; fi
}

free_port() {   # a port nobody listens on now (QEMU fails cleanly if it is taken meanwhile)
  local p
  while :; do
    p=$(( 20000 + RANDOM % 30000 ))
    ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}

teardown() {   # $1 state dir: stop QEMU if it runs, delete the state
  local dir=$1 pid i
  if pid=$(recorded_pid "$dir"); then
    for (( i = 0; i < POWEROFF_TIMEOUT * 10; i++ )); do
      recorded_pid "$dir" >/dev/null || break
      # asked again every 10 s: a VM still booting may not have heard the first request
      (( i % 100 )) || as_root "$dir" -o ConnectTimeout=3 'systemctl --no-block poweroff' >/dev/null 2>&1 || true
      sleep 0.1
    done
    if recorded_pid "$dir" >/dev/null; then
      log "$(basename "$dir") did not power off within ${POWEROFF_TIMEOUT} s: stopping QEMU (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      for (( i = 0; i < 50; i++ )); do recorded_pid "$dir" >/dev/null || break; sleep 0.1; done
      if recorded_pid "$dir" >/dev/null; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
    fi
  fi
  rm -rf --one-file-system -- "$dir"
}

cmd_boot() {
  [ $# -eq 1 ] || die "usage: $0 boot NAME"
  local name=$1 dir image accel t0 t1 deadline try state="" err
  dir=$(state_dir "$name")
  lock_name "$name"
  if ! mkdir "$dir" 2>/dev/null; then
    recorded_pid "$dir" >/dev/null && die "VM '$name' is already running (pid $(cat "$dir/qemu.pid"))"
    log "removing stale state of '$name'"
    teardown "$dir"
    mkdir "$dir"
  fi
  BOOTING_NAME=$name BOOTING_DIR=$dir
  trap boot_failed EXIT

  image=$("$HERE/image.sh" | tail -n 1)
  [ -f "$image/built" ] || die "image.sh returned no image"
  echo "$image" > "$dir/image"
  accel=$(pick_accel)
  # shellcheck disable=SC2054
  local accel_args=(-accel tcg,thread=multi -cpu max)
  [ "$accel" = kvm ] && accel_args=(-accel kvm -cpu host)
  t0=$(now_ms)
  qemu-img create -q -f qcow2 -b "$image/disk.img" -F raw "$dir/disk.qcow2"
  for (( try = 0; try < 5; try++ )); do
    free_port > "$dir/port-22"; free_port > "$dir/port-80"
    # -daemonize: QEMU returns once it runs, with stdin/stdout/stderr on /dev/null; the lock (fd 8)
    # must not be inherited by it
    if err=$(qemu-system-x86_64 "${accel_args[@]}" -smp "$CPUS" -m "$MEMORY" -name "$name" \
        -kernel "$image/vmlinuz" -initrd "$image/initrd.img" -append "$(cat "$image/cmdline")" \
        -drive "file=$dir/disk.qcow2,format=qcow2,if=virtio,cache=unsafe,discard=unmap" \
        -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$(cat "$dir/port-22")-:22,hostfwd=tcp:127.0.0.1:$(cat "$dir/port-80")-:80" \
        -device virtio-net-pci,netdev=n0 -device virtio-rng-pci \
        -display none -monitor none -serial "file:$dir/serial.log" \
        -daemonize -pidfile "$dir/qemu.pid" 2>&1 8>&- < /dev/null); then
      break
    fi
    case $err in *"forwarding rule"*|*"Could not set up host forwarding"*) continue ;; esac
    log "QEMU did not start: $err"; return 1
  done
  [ -f "$dir/qemu.pid" ] || { log "QEMU did not start: $err"; return 1; }
  proc_start "$(tr -dc 0-9 < "$dir/qemu.pid")" > "$dir/qemu.start"
  echo "$accel" > "$dir/accel"
  t1=$(now_ms)

  deadline=$(( t1 + BOOT_TIMEOUT * 1000 ))
  until as_root "$dir" -o ConnectTimeout=5 true 2>/dev/null; do
    recorded_pid "$dir" >/dev/null || { log "QEMU exited during boot"; return 1; }
    [ "$(now_ms)" -lt "$deadline" ] || { log "no ssh after ${BOOT_TIMEOUT} s"; return 1; }
    sleep 1
  done
  local ssh_ms=$(( $(now_ms) - t1 ))
  state=$(as_root "$dir" "timeout $(( BOOT_TIMEOUT - ssh_ms / 1000 + 1 )) systemctl is-system-running --wait" 2>/dev/null || true)
  case $state in running|degraded) ;; *) log "'$name' not up (state: ${state:-no answer})"; return 1 ;; esac
  trap - EXIT
  log "'$name' is $state ($accel, $CPUS cpu): ssh after $(secs "$ssh_ms") s, up after $(secs $(( $(now_ms) - t1 ))) s; ssh 127.0.0.1:$(cat "$dir/port-22"), http 127.0.0.1:$(cat "$dir/port-80")"
  if [ "$state" = degraded ]; then
    log "failed units in '$name':"
    as_root "$dir" systemctl --failed --no-legend --plain >&2 || true
  fi
  cat "$dir/port-22"
}

boot_failed() {   # EXIT trap of a boot that did not come up
  local rc=$? name=$BOOTING_NAME dir=$BOOTING_DIR
  [ $rc -ne 0 ] || rc=1
  log "boot of '$name' failed; last lines of $dir/serial.log:"
  tail -n 30 "$dir/serial.log" 2>/dev/null | tr -d '\r' | sed 's/^/  | /' >&2 || true
  if [ "${CONVERGE_KEEP_FAILED:-0}" = 1 ]; then
    log "kept $dir (CONVERGE_KEEP_FAILED=1); remove it with: $0 poweroff $name"
  else
    POWEROFF_TIMEOUT=0 teardown "$dir" || true
    unlock_name "$name"
  fi
  exit "$rc"
}

running_dir() {   # $1 NAME -> its state dir, or die with a clear message
  local dir; dir=$(state_dir "$1")
  [ -d "$dir" ] || die "no VM '$1' (boot it first: $0 boot $1)"
  recorded_pid "$dir" >/dev/null || die "VM '$1' is not running (see $dir/serial.log)"
  echo "$dir"
}

cmd_exec() {
  [ $# -ge 2 ] || die "usage: $0 exec NAME CMD [ARGS...]"
  local dir; dir=$(running_dir "$1"); shift
  # ssh hands the remote shell (bash, root's) one string: quote every argument for it
  exec ssh "${SSH_OPTS[@]}" -p "$(ssh_port "$dir")" root@127.0.0.1 \
    "$(printf '%q ' env -i PATH="$INNER_PATH" HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb "$@")"
}

cmd_copy_in() {
  [ $# -eq 3 ] || die "usage: $0 copy-in NAME SRC DEST"
  local dir src=$2 dest=$3
  dir=$(running_dir "$1")
  [[ $dest == /* ]] || die "DEST must be an absolute path inside the VM: $dest"
  [ -e "$src" ] || die "no such file: $src"
  if [ -d "$src" ]; then
    tar -C "$src" --owner=0 --group=0 --numeric-owner -cf - . |
      as_root "$dir" "$(printf '%q ' sh -c 'mkdir -p -- "$1" && tar -C "$1" -xf -' sh "$dest")"
  else
    as_root "$dir" "$(printf '%q ' sh -c '
      d=$1
      case $d in */) d=$d$3 ;; *) [ -d "$d" ] && d=$d/$3 ;; esac
      mkdir -p -- "$(dirname -- "$d")" &&
      cat > "$d.converge-tmp" && chmod "$2" "$d.converge-tmp" && mv -f -- "$d.converge-tmp" "$d"
    ' sh "$dest" "$(stat -c %a "$src")" "$(basename -- "$src")")" < "$src"
  fi
}

cmd_ssh() {
  [ $# -ge 1 ] || die "usage: $0 ssh NAME [SSH ARGS...]"
  local dir; dir=$(running_dir "$1"); shift
  exec ssh "${SSH_OPTS[@]}" -p "$(ssh_port "$dir")" vagrant@127.0.0.1 "$@"
}

cmd_port() {
  [ $# -eq 2 ] || die "usage: $0 port NAME GUESTPORT"
  local dir; dir=$(running_dir "$1")
  [ -f "$dir/port-$2" ] || die "guest port $2 is not forwarded (22 and 80 are)"
  cat "$dir/port-$2"
}

cmd_poweroff() {
  [ $# -eq 1 ] || die "usage: $0 poweroff NAME"
  local dir t0; dir=$(state_dir "$1")
  [ -d "$dir" ] || { log "no VM '$1': nothing to power off"; return 0; }
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
    if recorded_pid "$d" >/dev/null; then
      echo "$(basename "$d") running pid=$(recorded_pid "$d") ssh=127.0.0.1:$(cat "$d/port-22") http=127.0.0.1:$(cat "$d/port-80")"
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
  port) cmd_port "$@" ;;
  poweroff) cmd_poweroff "$@" ;;
  list) cmd_list ;;
  -h|--help|help) usage ;;
  *) usage; die "unknown subcommand: $sub" ;;
esac
