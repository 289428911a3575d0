# harness/lib/common.sh: what every harness script needs (sourced, never run): messages, root,
# the cache folder and its locks, clocks, processes known by pid AND start time, and deleting
# trees that must never be crossed into a mount. Defines functions and a few variables only; it
# runs nothing and changes no shell option.
#
# The sourcing script sets LOG_PREFIX (the word before every message, e.g. "rootfs") and has a
# header comment: its lines after the first, up to the first line that is no comment, are its
# --help.
#
# Variables it sets: CACHE (${CONVERGE_CACHE:-/var/cache/converge-e2e}), INNER_PATH (the PATH of
# commands run inside a container or VM).
# shellcheck shell=bash disable=SC2034  # its variables are the sourcing script's to use

CACHE=${CONVERGE_CACHE:-/var/cache/converge-e2e}
INNER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "${LOG_PREFIX:-harness}: $*" >&2; }
die() { log "error: $*"; exit 1; }
# The running script's header comment (without its #! line), on stderr.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; }
need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root"; }
# installed PKG: true when the Debian package PKG is installed.
installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]; }

# run_subcommand "SUB..." "$@": the command line of a script with subcommands. `SUB ARGS...` runs
# the script's cmd_SUB (a - in SUB is a _ in the function's name), after checking root when SUB is
# one of the first argument's words; help, -h and --help print the usage; no subcommand prints it
# and exits 2; an unknown one prints it and fails.
run_subcommand() {
  local need=" $1 " sub; shift
  [ $# -ge 1 ] || { usage; exit 2; }
  sub=$1; shift
  [[ $need != *" $sub "* ]] || need_root
  case $sub in
    -h|--help|help) usage ;;
    *_*) usage; die "unknown subcommand: $sub" ;;
    *) declare -F "cmd_${sub//-/_}" >/dev/null || { usage; die "unknown subcommand: $sub"; }
       "cmd_${sub//-/_}" "$@" ;;
  esac
}

now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $(( t / 1000 )); }
secs() { printf '%d.%02d' $(( $1 / 1000 )) $(( $1 % 1000 / 10 )); }   # ms -> "s.cc"

# lock_cache FILE: take the flock FILE in the cache folder on fd 9 (released when the script
# exits), waiting up to 900 s for a build elsewhere to finish. Makes the cache folder if needed.
lock_cache() {
  mkdir -p "$CACHE"
  exec 9>"$1"
  flock -w 900 9 || die "could not lock $1 within 900 s"
}

# --- processes, identified by pid AND start time so that a reused pid is never signalled -------
# proc_start PID -> start time in clock ticks since boot (field 22 of /proc/PID/stat); fails when
# there is no such process or it has exited and is only a zombie (PID 1 of these machines may take
# a second to reap the orphans it inherits).
proc_start() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }                                   # drop "pid (comm) ": comm may contain spaces
  # shellcheck disable=SC2086
  set -- $s
  case $1 in Z|X|x) return 1 ;; esac            # field 3: state
  echo "${20}"
}
# pid_alive PID START: true when PID runs and started at START (as proc_start tells it).
pid_alive() { [ -n "$1" ] && [ -n "$2" ] && [ "$(proc_start "$1" 2>/dev/null)" = "$2" ]; }
# record_pid PID FILE: write "pid starttime" (or "pid gone") to FILE.
record_pid() { echo "$1 $(proc_start "$1" || echo gone)" > "$2"; }
# recorded_pid FILE -> the pid recorded in FILE if that very process still runs, else fail.
recorded_pid() {
  local pid start
  [ -f "$1" ] && read -r pid start < "$1" || return 1
  pid_alive "$pid" "$start" || return 1
  echo "$pid"
}

# --- trees --------------------------------------------------------------------------------------
# mounts_below DIR: the mount points below DIR, one a line.
mounts_below() { findmnt -rn -o TARGET | grep -F -- "$(realpath -- "$1")/" || true; }

# remove_tree DIR: delete a tree the harness made, refusing when anything is mounted below it and
# never crossing into another file system.
remove_tree() {
  local d=$1
  [ -e "$d" ] || return 0
  [ -z "$(mounts_below "$d")" ] || { log "not removing $d: something is mounted below it"; return 1; }
  rm -rf --one-file-system -- "$d"
}
