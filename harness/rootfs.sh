#!/bin/bash
# harness/rootfs.sh: owns the cached Debian bookworm root filesystem that every end-to-end test
# container starts from (container.sh overlays or copies it), and the ssh key pair that logs into
# it. Nothing of it lives in the checkout.
#
#   harness/rootfs.sh            build the rootfs if it is not cached yet; print its path as the
#                                last line of stdout (everything else goes to stderr)
#   harness/rootfs.sh --prune    also delete cached rootfs directories with another key
#
# Cache: ${CONVERGE_CACHE:-/var/cache/converge-e2e}/
#   rootfs-<key>/        the rootfs; <key> = short sha256 of the package list + this script's text,
#                        so editing this file or the list gives a new rootfs, never a stale one
#   ssh/id_ed25519{,.pub} key pair authorized for root and vagrant in the rootfs
#   .lock                flock: concurrent callers wait for one build instead of racing
#   .build-*             a build in progress (renamed into rootfs-<key> atomically when done)
#
# Built from Debian's packages alone with mmdebstrap (variant apt, no kernel: containers only),
# configured without booting it: hostname, empty fstab, masked wait-online and apt timers, user
# vagrant (group sudo, passwordless sudo), the ssh key, `UseDNS no`. nginx and ssh stay enabled as
# Debian ships them. Needs root and harness/install-deps.sh.
set -euo pipefail

SUITE=bookworm
PKGS=systemd,systemd-sysv,dbus,openssh-server,nginx,python3-venv,python3-pip,sudo,curl,procps,iproute2,ca-certificates,passwd
MIRROR=${CONVERGE_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${CONVERGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
CACHE=${CONVERGE_CACHE:-/var/cache/converge-e2e}
HOSTNAME_=convergee2e

log() { echo "rootfs: $*" >&2; }
die() { log "error: $*"; exit 1; }

prune=0
case "${1:-}" in
  "") ;;
  --prune) prune=1 ;;
  -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2; exit 0 ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac

[ "$(id -u)" -eq 0 ] || die "must run as root"

KEY=$( { printf '%s\n%s\n' "$SUITE" "$PKGS"; cat "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-12)
ROOTFS=$CACHE/rootfs-$KEY
SSH_KEY=$CACHE/ssh/id_ed25519

# True when the cached rootfs is complete and authorizes the current key pair.
cache_ok() {
  [ -f "$ROOTFS/etc/converge-e2e-rootfs" ] && [ -f "$SSH_KEY" ] && [ -f "$SSH_KEY.pub" ] &&
    cmp -s "$SSH_KEY.pub" "$ROOTFS/root/.ssh/authorized_keys" &&
    cmp -s "$SSH_KEY.pub" "$ROOTFS/home/vagrant/.ssh/authorized_keys"
}

mounts_below() { findmnt -rn -o TARGET | grep -F -- "$(realpath -- "$1")/" || true; }

# Delete a directory tree this script made, never across a mount point.
remove_tree() {
  local d=$1
  [ -e "$d" ] || return 0
  [ -z "$(mounts_below "$d")" ] || { log "not removing $d: something is mounted below it"; return 1; }
  rm -rf --one-file-system -- "$d"
}

# Delete a half-made build. mmdebstrap mounts /proc, /sys, /dev... in the chroot and, when
# interrupted, unmounts them a moment after it has exited: wait for that, then detach what is left
# (these mounts are inside our own temp dir: nobody else uses them).
remove_build() {
  local d=$1 i
  [ -e "$d" ] || return 0
  for (( i = 0; i < 100; i++ )); do [ -n "$(mounts_below "$d")" ] || break; sleep 0.1; done
  mounts_below "$d" | sort -r | while IFS= read -r m; do umount -l -- "$m" || true; done
  remove_tree "$d"
}

# True while a container of container.sh has the rootfs $1 as the read-only layer of its overlay:
# it must then be neither changed nor deleted.
in_use() { findmnt -rn -t overlay -o OPTIONS | tr ',' '\n' | grep -qxF "lowerdir=$1"; }

prune_others() {
  local d
  for d in "$CACHE"/rootfs-*; do
    if [ ! -d "$d" ] || [ "$d" = "$ROOTFS" ]; then continue; fi
    if in_use "$d"; then log "not pruning $d: a running container uses it"; continue; fi
    log "pruning $d"; remove_tree "$d"
  done
}

authorize_key() {   # $1: rootfs
  local r=$1
  install -d -m 700 "$r/root/.ssh" "$r/home/vagrant/.ssh"
  install -m 600 "$SSH_KEY.pub" "$r/root/.ssh/authorized_keys"
  install -m 600 "$SSH_KEY.pub" "$r/home/vagrant/.ssh/authorized_keys"
  chroot "$r" chown -R vagrant:vagrant /home/vagrant/.ssh
}

configure() {       # $1: freshly bootstrapped rootfs; no boot, no mounts
  local r=$1
  echo "$HOSTNAME_" > "$r/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 %s\n::1 localhost ip6-localhost ip6-loopback\n' "$HOSTNAME_" > "$r/etc/hosts"
  : > "$r/etc/fstab"                      # a container has no block devices to mount
  # Only loopback exists in a --private-network container: wait-online would hold boot (and
  # nginx, which is After=network-online.target) for two minutes. apt timers: no surprises.
  systemctl --root="$r" mask systemd-networkd-wait-online.service apt-daily.timer \
    apt-daily-upgrade.timer >/dev/null 2>&1
  # user vagrant, as a Vagrant box has it: group sudo, sudo without a password, login by key only
  chroot "$r" useradd -m -s /bin/bash -G sudo vagrant
  chroot "$r" usermod -p '*' vagrant
  echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$r/etc/sudoers.d/vagrant"
  chmod 440 "$r/etc/sudoers.d/vagrant"
  authorize_key "$r"
  echo 'UseDNS no' > "$r/etc/ssh/sshd_config.d/converge-e2e.conf"
  # marker written last: its presence means the rootfs is complete
  printf 'key=%s\nsuite=%s\npackages=%s\nbuilt=%s\n' "$KEY" "$SUITE" "$PKGS" "$(date -u +%FT%TZ)" \
    > "$r/etc/converge-e2e-rootfs"
}

# Fast path: already built, no lock needed (the directory only ever appears by an atomic rename).
if cache_ok; then
  [ $prune -eq 0 ] || { exec 9>"$CACHE/.lock"; flock -w 900 9; prune_others; }
  log "cached: $ROOTFS"
  echo "$ROOTFS"
  exit 0
fi

mkdir -p "$CACHE/ssh"
exec 9>"$CACHE/.lock"
log "waiting for the cache lock $CACHE/.lock"
flock -w 900 9 || die "could not lock $CACHE/.lock within 900 s"

# We hold the lock, so any .build-* directory is left over from a build that was killed.
for d in "$CACHE"/.build-*; do
  [ -e "$d" ] || continue
  log "removing stale $d"; remove_build "$d"
done

if [ ! -f "$SSH_KEY" ] || [ ! -f "$SSH_KEY.pub" ]; then
  rm -f "$SSH_KEY" "$SSH_KEY.pub"
  ssh-keygen -q -t ed25519 -N '' -C converge-e2e -f "$SSH_KEY"
fi

if [ -f "$ROOTFS/etc/converge-e2e-rootfs" ] && ! cache_ok; then
  # the key pair was deleted and regenerated
  ! in_use "$ROOTFS" || die "the ssh key changed while containers use $ROOTFS: power them off first"
  log "re-authorizing the current ssh key in $ROOTFS"
  authorize_key "$ROOTFS"
fi

if ! cache_ok; then
  BUILD=$(mktemp -d "$CACHE/.build-rootfs-$KEY.XXXXXX")
  chmod 755 "$BUILD"    # mktemp makes it 0700: apt's _apt user could not download into it
  trap 'remove_build "$BUILD" || true' EXIT
  log "building $ROOTFS (mmdebstrap $SUITE, about a minute)"
  start=$(date +%s)
  # In the background so that a signal to this script reaches mmdebstrap too, which then unmounts
  # what it mounted in the chroot before the EXIT trap deletes the half-built tree.
  mmdebstrap --mode=root --variant=apt --include="$PKGS" "$SUITE" "$BUILD/root" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
    "deb $SECURITY_MIRROR $SUITE-security main" >&2 &
  MMDEBSTRAP=$!
  trap 'kill -INT "$MMDEBSTRAP" 2>/dev/null; wait "$MMDEBSTRAP"; exit 130' INT TERM HUP
  wait "$MMDEBSTRAP"
  trap - INT TERM HUP
  configure "$BUILD/root"
  mv -T "$BUILD/root" "$ROOTFS"
  remove_tree "$BUILD"
  trap - EXIT
  log "built in $(( $(date +%s) - start )) s, $(du -sh "$ROOTFS" | cut -f1)"
fi

[ $prune -eq 0 ] || prune_others
cache_ok || die "rootfs at $ROOTFS is incomplete"
log "ready: $ROOTFS"
echo "$ROOTFS"
