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
#   rootfs-<key>/        the rootfs; <key> = short sha256 of the suite, the package list and the
#                        functions that build and configure it (lib/debian.sh tree_key), so
#                        changing what goes into the tree gives a new rootfs, never a stale one
#   ssh/id_ed25519{,.pub} key pair authorized for root and vagrant in the rootfs
#   .lock                flock: concurrent callers wait for one build instead of racing
#   .build-*             a build in progress (renamed into rootfs-<key> atomically when done)
#
# Built from Debian's packages alone with mmdebstrap (variant apt, no kernel: containers only),
# from the mirror this machine's apt uses (lib/mirror.sh; CONVERGE_MIRROR and
# CONVERGE_SECURITY_MIRROR override it), configured without booting it: hostname, empty fstab,
# masked wait-online and apt timers, user vagrant (group sudo, passwordless sudo), the ssh key,
# `UseDNS no`. nginx and ssh stay enabled as Debian ships them. Needs root and
# harness/install-deps.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib/common.sh
. "$HERE/lib/common.sh"
# shellcheck source=SCRIPTDIR/lib/mirror.sh
. "$HERE/lib/mirror.sh"
# shellcheck source=SCRIPTDIR/lib/debian.sh
. "$HERE/lib/debian.sh"
LOG_PREFIX=rootfs
PKGS=systemd,systemd-sysv,dbus,openssh-server,nginx,python3-venv,python3-pip,sudo,curl,procps,iproute2,ca-certificates,passwd,git

build_args "$@"
need_root

configure() {       # $1: freshly bootstrapped rootfs; no boot, no mounts
  local r=$1
  configure_machine "$r"
  : > "$r/etc/fstab"                      # a container has no block devices to mount
  # marker written last: its presence means the rootfs is complete
  printf 'key=%s\nsuite=%s\npackages=%s\nbuilt=%s\n' "$KEY" "$SUITE" "$PKGS" "$(date -u +%FT%TZ)" \
    > "$r/etc/converge-e2e-rootfs"
}

KEY=$(tree_key "$PKGS" bootstrap configure_machine authorize_key configure)
ROOTFS=$CACHE/rootfs-$KEY

# True when the cached rootfs is complete and authorizes the current key pair.
cache_ok() {
  [ -f "$ROOTFS/etc/converge-e2e-rootfs" ] && [ -f "$SSH_KEY" ] && [ -f "$SSH_KEY.pub" ] &&
    cmp -s "$SSH_KEY.pub" "$ROOTFS/root/.ssh/authorized_keys" &&
    cmp -s "$SSH_KEY.pub" "$ROOTFS/home/vagrant/.ssh/authorized_keys"
}

# True while a container of container.sh has the rootfs $1 as the read-only layer of its overlay:
# it must then be neither changed nor deleted.
in_use() { findmnt -rn -t overlay -o OPTIONS | tr ',' '\n' | grep -qxF "lowerdir=$1"; }

# Fast path: already built, no lock needed (the directory only ever appears by an atomic rename).
if cache_ok; then
  [ $prune -eq 0 ] || { lock_cache "$CACHE/.lock"; prune_cached "$ROOTFS" "a running container"; }
  log "cached: $ROOTFS"
  echo "$ROOTFS"
  exit 0
fi

log "waiting for the cache lock $CACHE/.lock"
lock_cache "$CACHE/.lock"
remove_stale_builds rootfs
ensure_ssh_key

if [ -f "$ROOTFS/etc/converge-e2e-rootfs" ] && ! cache_ok; then
  # the key pair was deleted and regenerated
  ! in_use "$ROOTFS" || die "the ssh key changed while containers use $ROOTFS: power them off first"
  log "re-authorizing the current ssh key in $ROOTFS"
  authorize_key "$ROOTFS"
fi

if ! cache_ok; then
  new_build rootfs "$KEY"
  log "building $ROOTFS (mmdebstrap $SUITE, about a minute)"
  start=$(date +%s)
  bootstrap "$PKGS" "$BUILD/root"
  configure "$BUILD/root"
  mv -T "$BUILD/root" "$ROOTFS"
  remove_tree "$BUILD"
  done_build
  log "built in $(( $(date +%s) - start )) s, $(du -sh "$ROOTFS" | cut -f1)"
fi

[ $prune -eq 0 ] || prune_cached "$ROOTFS" "a running container"
cache_ok || die "rootfs at $ROOTFS is incomplete"
log "ready: $ROOTFS"
echo "$ROOTFS"
