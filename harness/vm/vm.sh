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
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source=SCRIPTDIR/../lib/machine.sh
. "$HERE/../lib/machine.sh"
LOG_PREFIX=vm MACHINE=VM CONSOLE_LOG=serial.log NAME_LOCK_WAIT=300
RUN=${CONVERGE_VM_RUN_DIR:-/var/tmp/converge-e2e-vm}
BOOT_TIMEOUT=${CONVERGE_VM_BOOT_TIMEOUT:-300}
POWEROFF_TIMEOUT=${CONVERGE_VM_POWEROFF_TIMEOUT:-60}
CPUS=${CONVERGE_VM_CPUS:-2}
MEMORY=${CONVERGE_VM_MEMORY:-1536}
SSH_OPTS+=(-o ServerAliveInterval=10 -o ServerAliveCountMax=6)

qemu_pid() {   # $1 state dir -> QEMU's pid if that process still runs, else fail
  local pid
  [ -f "$1/qemu.pid" ] && [ -f "$1/qemu.start" ] || return 1
  pid=$(tr -dc 0-9 < "$1/qemu.pid")     # written by QEMU; its start time by boot
  pid_alive "$pid" "$(cat "$1/qemu.start")" || return 1
  echo "$pid"
}

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
  if pid=$(qemu_pid "$dir"); then
    for (( i = 0; i < POWEROFF_TIMEOUT * 10; i++ )); do
      qemu_pid "$dir" >/dev/null || break
      # asked again every 10 s: a VM still booting may not have heard the first request
      (( i % 100 )) || as_root "$dir" -o ConnectTimeout=3 'systemctl --no-block poweroff' >/dev/null 2>&1 || true
      sleep 0.1
    done
    if qemu_pid "$dir" >/dev/null; then
      log "$(basename "$dir") did not power off within ${POWEROFF_TIMEOUT} s: stopping QEMU (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      for (( i = 0; i < 50; i++ )); do qemu_pid "$dir" >/dev/null || break; sleep 0.1; done
      if qemu_pid "$dir" >/dev/null; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
    fi
  fi
  rm -rf --one-file-system -- "$dir"
}

cmd_boot() {
  [ $# -eq 1 ] || die "usage: $0 boot NAME"
  local name=$1 dir image accel t0 t1 deadline try state="" err
  begin_boot "$name"
  dir=$BOOTING_DIR

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
    qemu_pid "$dir" >/dev/null || { log "QEMU exited during boot"; return 1; }
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

# --- the hooks of lib/machine.sh ---------------------------------------------------------------
machine_alive() { qemu_pid "$1" >/dev/null; }
machine_who() { echo "pid $(cat "$1/qemu.pid")"; }
machine_status() {
  local pid; pid=$(qemu_pid "$1") || return 1
  echo "pid=$pid ssh=127.0.0.1:$(cat "$1/port-22") http=127.0.0.1:$(cat "$1/port-80")"
}
machine_sh() {   # $1 state dir, $2 script, rest: its arguments; run by sh inside, as root
  local dir=$1; shift
  # ssh hands the remote shell (bash, root's) one string: quote every argument for it
  as_root "$dir" "$(printf '%q ' sh -c "$1" sh "${@:2}")"
}
discard_failed() { POWEROFF_TIMEOUT=0 teardown "$1"; }
keep_failed() { :; }

cmd_exec() {
  [ $# -ge 2 ] || die "usage: $0 exec NAME CMD [ARGS...]"
  local dir; dir=$(running_dir "$1"); shift
  # ssh hands the remote shell (bash, root's) one string: quote every argument for it
  exec ssh "${SSH_OPTS[@]}" -p "$(ssh_port "$dir")" root@127.0.0.1 \
    "$(printf '%q ' "${CLEAN_ENV[@]}" TERM=dumb "$@")"
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

run_subcommand "boot exec copy-in ssh poweroff" "$@"
