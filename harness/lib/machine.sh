# harness/lib/machine.sh: what container.sh (systemd-nspawn) and vm/vm.sh (QEMU) share about
# their throw-away machines (sourced, never run): names and state directories, the lock of one
# NAME, the boot that cleans up after itself when it fails, and the subcommands that work alike
# (copy-in, poweroff, list). Needs common.sh.
#
# The sourcing script sets
#   RUN          the folder of the state directories, RUN/NAME
#   MACHINE      what a machine is called in messages: "container" or "VM"
#   CONSOLE_LOG  the file in NAME/ that holds the console's output (shown when a boot fails)
#   NAME_LOCK_WAIT  seconds to wait for another boot or poweroff of the same NAME
# and defines the hooks
#   machine_alive DIR      true while the machine of the state directory DIR runs
#   machine_who DIR        its process for messages, e.g. "leader 123" or "pid 456"
#   machine_status DIR     what `list` prints after "NAME running" (fails when it is not running)
#   machine_sh DIR SCRIPT ARGS...  run `sh -c SCRIPT sh ARGS...` inside as root, stdin passed
#   teardown DIR           stop the machine if it runs and delete DIR
#   discard_failed DIR     clean up after a failed boot (usually teardown)
#   keep_failed DIR        what to do with a failed boot kept by CONVERGE_KEEP_FAILED=1
# shellcheck shell=bash disable=SC2034  # its variables are the sourcing script's to use

# Options of the harness's ssh client: the harness key, no host key checks (every machine of an
# image has the same host keys), no questions.
SSH_OPTS=(-i "$CACHE/ssh/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
          -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=10)
# The environment of a command run inside (`env -i`, then TERM): root's, clean.
CLEAN_ENV=(env -i PATH="$INNER_PATH" HOME=/root USER=root LOGNAME=root LANG=C.UTF-8)

check_name() {   # a machine name is a hostname; it also names a directory
  [[ ${1:-} =~ ^[A-Za-z0-9][A-Za-z0-9-]{0,62}$ ]] ||
    die "invalid NAME '${1:-}': use letters, digits and '-', at most 63 characters"
}
state_dir() { check_name "$1"; echo "$RUN/$1"; }

lock_name() {   # $1 NAME: serialize boot/poweroff of one NAME (fd 8, released at exit)
  local f=$RUN/.$1.lock
  mkdir -p "$RUN"
  while :; do
    exec 8>>"$f"
    flock -w "$NAME_LOCK_WAIT" 8 || die "another boot or poweroff of '$1' holds $f"
    # the holder before us may have deleted the file (unlock_name): then lock the new one
    [ "$(stat -c %d:%i "$f" 2>/dev/null)" != "$(stat -L -c %d:%i "/proc/$$/fd/8")" ] || return 0
    exec 8>&-
  done
}
unlock_name() { rm -f "$RUN/.$1.lock"; exec 8>&-; }   # $1 NAME: when NAME is gone

running_dir() {   # $1 NAME -> its state dir, or die with a clear message
  local dir; dir=$(state_dir "$1") || exit
  [ -d "$dir" ] || die "no $MACHINE '$1' (boot it first: $0 boot $1)"
  machine_alive "$dir" || die "$MACHINE '$1' is not running (see $dir/$CONSOLE_LOG)"
  echo "$dir"
}

# begin_boot NAME: lock NAME, make its state directory BOOTING_DIR (a stale one is torn down
# first), and from here on have a failed boot stop what it started and delete it (boot_failed, an
# EXIT trap; the boot ends with `trap - EXIT` once the machine is up).
begin_boot() {
  local name=$1 dir
  dir=$(state_dir "$name")
  lock_name "$name"
  if ! mkdir "$dir" 2>/dev/null; then
    ! machine_alive "$dir" || die "$MACHINE '$name' is already running ($(machine_who "$dir"))"
    log "removing stale state of '$name'"
    teardown "$dir"
    mkdir "$dir"
  fi
  BOOTING_NAME=$name BOOTING_DIR=$dir
  trap boot_failed EXIT
}

boot_failed() {   # EXIT trap of a boot that did not come up
  local rc=$? name=$BOOTING_NAME dir=$BOOTING_DIR
  [ $rc -ne 0 ] || rc=1
  log "boot of '$name' failed; last lines of $dir/$CONSOLE_LOG:"
  tail -n 30 "$dir/$CONSOLE_LOG" 2>/dev/null | tr -d '\r' | sed 's/^/  | /' >&2 || true
  if [ "${CONVERGE_KEEP_FAILED:-0}" = 1 ]; then
    keep_failed "$dir"
    log "kept $dir (CONVERGE_KEEP_FAILED=1); remove it with: $0 poweroff $name"
  else
    discard_failed "$dir" || true
    unlock_name "$name"
  fi
  exit "$rc"
}

# The scripts copy-in runs inside: $1 DEST. A directory comes as a tar stream on stdin; a file
# on stdin is written beside DEST (DEST/ or an existing directory: keep its name, $3) with mode
# $2 and renamed onto it, so paths resolve inside the machine and a running binary can be replaced.
# shellcheck disable=SC2016   # expanded inside, by sh
COPY_IN_DIR='mkdir -p -- "$1" && tar -C "$1" -xf -'
# shellcheck disable=SC2016
COPY_IN_FILE='
      d=$1
      case $d in */) d=$d$3 ;; *) [ -d "$d" ] && d=$d/$3 ;; esac
      mkdir -p -- "$(dirname -- "$d")" &&
      cat > "$d.converge-tmp" && chmod "$2" "$d.converge-tmp" && mv -f -- "$d.converge-tmp" "$d"
    '

cmd_copy_in() {
  [ $# -eq 3 ] || die "usage: $0 copy-in NAME SRC DEST"
  local dir src=$2 dest=$3 mode
  dir=$(running_dir "$1") || exit
  [[ $dest == /* ]] || die "DEST must be an absolute path inside the $MACHINE: $dest"
  [ -e "$src" ] || die "no such file: $src"
  if [ -d "$src" ]; then
    tar -C "$src" --owner=0 --group=0 --numeric-owner -cf - . | machine_sh "$dir" "$COPY_IN_DIR" "$dest"
  else
    mode=$(stat -c %a "$src")
    # shellcheck disable=SC2094   # basename only reads the name
    machine_sh "$dir" "$COPY_IN_FILE" "$dest" "$mode" "$(basename -- "$src")" < "$src"
  fi
}

cmd_poweroff() {
  [ $# -eq 1 ] || die "usage: $0 poweroff NAME"
  local dir t0; dir=$(state_dir "$1") || exit
  [ -d "$dir" ] || { log "no $MACHINE '$1': nothing to power off"; return 0; }
  lock_name "$1"
  [ -d "$dir" ] || { unlock_name "$1"; log "'$1' was powered off meanwhile"; return 0; }
  t0=$(now_ms)
  teardown "$dir"
  unlock_name "$1"
  log "'$1' powered off and removed in $(secs $(( $(now_ms) - t0 ))) s"
}

cmd_list() {
  local d status
  [ -d "$RUN" ] || return 0
  for d in "$RUN"/*/; do
    [ -d "$d" ] || continue
    d=${d%/}
    if status=$(machine_status "$d"); then
      echo "$(basename "$d") running $status"
    else
      echo "$(basename "$d") stopped (stale: '$0 poweroff $(basename "$d")' removes it)"
    fi
  done
}
