# harness/lib/debian.sh: building the cached Debian trees of rootfs.sh (containers) and
# vm/image.sh (VMs) with mmdebstrap, from Debian's packages alone, configured without booting
# (sourced, never run). Needs common.sh and mirror.sh.
#
# The cache protocol both follow: a tree is built in $CACHE/.build-<kind>-<key>.XXXXXX under a
# flock and renamed into place with one `mv -T`, so a reader never sees half a tree; a build killed
# by a signal cleans up after itself, one killed by SIGKILL is removed by the next build (which
# holds the lock, so any .build-* it finds is stale).
# shellcheck shell=bash disable=SC2034  # its variables are the sourcing script's to use

# The Debian release of the trees: bookworm (Debian 12, systemd 252) unless CONVERGE_SUITE names
# another one the tests know (trixie: Debian 13, systemd 257, nginx 1.26, Python 3.13).
SUITE=${CONVERGE_SUITE:-bookworm}
case "$SUITE" in
  bookworm|trixie) ;;
  *) die "CONVERGE_SUITE=$SUITE: the harness builds bookworm or trixie" ;;
esac
HOSTNAME_=convergee2e
SSH_KEY=$CACHE/ssh/id_ed25519     # the harness's key pair, authorized for root and vagrant

# build_args "$@": the arguments of rootfs.sh and image.sh: none, --prune (sets prune=1) or --help.
build_args() {
  prune=0
  case "${1:-}" in
    "") ;;
    --prune) prune=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
}

# tree_key PKGS FUNCTION... -> the cache key of a tree: the first 12 hex digits of the sha256 of
# the suite, the package list, the host name and the named functions as bash prints them
# (`declare -f`: comments and layout do not count). The mirror does not count either: the same
# packages come from any mirror of the archive.
tree_key() {
  local pkgs=$1; shift
  { printf '%s\n' "$SUITE" "$pkgs" "$HOSTNAME_"; declare -f "$@"; } | sha256sum | cut -c1-12
}

# ensure_ssh_key: make the harness key pair when either half is missing. The caller holds
# $CACHE/.lock (rootfs.sh's lock, which owns the key).
ensure_ssh_key() {
  mkdir -p "$CACHE/ssh"
  if [ ! -f "$SSH_KEY" ] || [ ! -f "$SSH_KEY.pub" ]; then
    rm -f "$SSH_KEY" "$SSH_KEY.pub"
    ssh-keygen -q -t ed25519 -N '' -C converge-e2e -f "$SSH_KEY"
  fi
}

# remove_build DIR: delete a half-made build. mmdebstrap mounts /proc, /sys, /dev... in the chroot
# and, when interrupted, unmounts them a moment after it has exited: wait for that, then detach
# what is left (these mounts are inside our own temp dir: nobody else uses them).
remove_build() {
  local d=$1 i
  [ -e "$d" ] || return 0
  for (( i = 0; i < 100; i++ )); do [ -n "$(mounts_below "$d")" ] || break; sleep 0.1; done
  mounts_below "$d" | sort -r | while IFS= read -r m; do umount -l -- "$m" || true; done
  remove_tree "$d"
}

# remove_stale_builds KIND: delete $CACHE/.build-KIND-*, left over from builds that were killed
# (the caller holds the lock of KIND).
remove_stale_builds() {
  local d
  for d in "$CACHE"/.build-"$1"-*; do
    [ -e "$d" ] || continue
    log "removing stale $d"; remove_build "$d"
  done
}

# prune_cached KEEP WHO: delete the other cached trees of KEEP's kind ($CACHE/<kind>-*) and suite
# (a tree of another suite is kept), except those the script's in_use function says are in use (by
# WHO, for the message).
prune_cached() {
  local keep=$1 who=$2 d
  for d in "${keep%-*}"-*; do
    if [ ! -d "$d" ] || [ "$d" = "$keep" ]; then continue; fi
    if [ "$(tree_suite "$d")" != "$SUITE" ]; then continue; fi
    if in_use "$d"; then log "not pruning $d: $who uses it"; continue; fi
    log "pruning $d"; remove_tree "$d"
  done
}

# tree_suite DIR -> the suite a cached tree was built from (its marker file's suite= line), or
# bookworm for a tree of a harness that knew no other.
tree_suite() {
  local marker
  for marker in "$1/etc/converge-e2e-rootfs" "$1/rootfs/etc/converge-e2e-vm"; do
    if [ -f "$marker" ]; then
      sed -n 's/^suite=//p' "$marker"
      return
    fi
  done
  echo bookworm
}

# new_build KIND KEY: make the build directory BUILD (mode 755: mktemp's 0700 would keep apt's
# _apt user from downloading into it) and remove it again when the script exits before
# done_build.
new_build() {
  BUILD=$(mktemp -d "$CACHE/.build-$1-$2.XXXXXX")
  chmod 755 "$BUILD"
  trap 'remove_build "$BUILD" || true' EXIT
}
done_build() { trap - EXIT; }

# bootstrap PKGS DIR: mmdebstrap SUITE with PKGS into DIR (variant apt, as root), from SUITE,
# SUITE-updates and SUITE-security of this machine's mirrors (mirror.sh). Runs in the background
# so that a signal to the script reaches mmdebstrap too, which then unmounts what it mounted in
# the chroot before the EXIT trap of new_build deletes the half-built tree.
bootstrap() {
  local pkgs=$1 dir=$2 sources pid
  debian_mirrors "$SUITE"
  sources=("deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main")
  if [ -n "$SECURITY_MIRROR" ]; then
    sources+=("deb $SECURITY_MIRROR $SUITE-security main")
  else
    log "no security archive among this machine's apt sources: building without $SUITE-security"
  fi
  log "mirrors: $MIRROR${SECURITY_MIRROR:+ and $SECURITY_MIRROR}"
  mmdebstrap --mode=root --variant=apt --include="$pkgs" "$SUITE" "$dir" "${sources[@]}" >&2 &
  pid=$!
  # shellcheck disable=SC2064   # the pid is known now
  trap "kill -INT $pid 2>/dev/null; wait $pid; exit 130" INT TERM HUP
  wait "$pid"
  trap - INT TERM HUP
}

# authorize_key ROOT: the harness key pair logs in as root and as vagrant.
authorize_key() {
  local r=$1
  install -d -m 700 "$r/root/.ssh" "$r/home/vagrant/.ssh"
  install -m 600 "$SSH_KEY.pub" "$r/root/.ssh/authorized_keys"
  install -m 600 "$SSH_KEY.pub" "$r/home/vagrant/.ssh/authorized_keys"
  chroot "$r" chown -R vagrant:vagrant /home/vagrant/.ssh
}

# configure_machine ROOT: what a container's and a VM's tree have alike, done without booting:
# hostname and /etc/hosts, masked wait-online (it would hold boot, and nginx, which is
# After=network-online.target, when no network comes up) and apt timers (no surprises in tests),
# user vagrant as a Vagrant box has it (group sudo, sudo without a password, login by key only),
# the harness key, `UseDNS no` for sshd.
configure_machine() {
  local r=$1
  echo "$HOSTNAME_" > "$r/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 %s\n::1 localhost ip6-localhost ip6-loopback\n' "$HOSTNAME_" > "$r/etc/hosts"
  systemctl --root="$r" mask systemd-networkd-wait-online.service apt-daily.timer \
    apt-daily-upgrade.timer >/dev/null 2>&1
  chroot "$r" useradd -m -s /bin/bash -G sudo vagrant
  chroot "$r" usermod -p '*' vagrant
  echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$r/etc/sudoers.d/vagrant"
  chmod 440 "$r/etc/sudoers.d/vagrant"
  authorize_key "$r"
  echo 'UseDNS no' > "$r/etc/ssh/sshd_config.d/converge-e2e.conf"
}
