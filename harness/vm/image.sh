#!/bin/bash
# harness/vm/image.sh: owns the cached bootable Debian bookworm image of the VM tiers: the same
# package approach as harness/rootfs.sh (mmdebstrap, Debian's packages only, configured without
# booting), plus a kernel, networking and a bootable disk. Nothing of it lives in the checkout.
#
#   harness/vm/image.sh            build the image if it is not cached yet; print its directory as
#                                  the last line of stdout (everything else goes to stderr)
#   harness/vm/image.sh --prune    also delete cached images with another key (never one a VM uses)
#
# Cache: ${CONVERGE_CACHE:-/var/cache/converge-e2e}/
#   vm-<key>/rootfs/     the configured root directory (box.sh builds the Vagrant box from it)
#   vm-<key>/disk.img    raw 4 GiB disk (sparse): MBR, ext4 partition `root`, GRUB for BIOS boot
#   vm-<key>/vmlinuz, vm-<key>/initrd.img   for QEMU's direct kernel boot (vm.sh)
#   vm-<key>/built       marker, written last
#   ssh/id_ed25519{,.pub} the harness key pair (shared with rootfs.sh), authorized for root and vagrant
#   .vm.lock             flock: concurrent callers wait for one build
# <key> = the first 12 hex digits of sha256(suite + package list + this script + lib.sh).
#
# The machine differs from the container rootfs in what a VM needs and in one thing the scenario
# needs: it has linux-image-cloud-amd64 (virtio built for VMs, small initrd), udev, kmod, rsync (for
# Vagrant's rsync synced folder), systemd-networkd with DHCP on en*/eth*, an fstab mounting
# LABEL=root, and NO nginx: a fresh VM starts without it, so the first `converge apply` really
# installs it (from a local apt repository the test copies in). Like the rootfs: hostname
# convergee2e, user vagrant (group sudo, sudo without password, login by key only), the harness
# key for root and vagrant, `UseDNS no`, masked wait-online and apt timers, an empty machine-id.
# Needs root and harness/vm/install-deps.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$HERE/lib.sh"
SUITE=bookworm
PKGS=systemd,systemd-sysv,dbus,udev,kmod,linux-image-cloud-amd64,initramfs-tools,openssh-server,python3-venv,python3-pip,sudo,curl,procps,iproute2,ca-certificates,passwd,netbase,rsync
SIZE_MB=4096
MIRROR=${CONVERGE_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${CONVERGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
CACHE=${CONVERGE_CACHE:-/var/cache/converge-e2e}
VM_RUN=${CONVERGE_VM_RUN_DIR:-/var/tmp/converge-e2e-vm}
HOSTNAME_=convergee2e

log() { echo "vm/image: $*" >&2; }
die() { log "error: $*"; exit 1; }

prune=0
case "${1:-}" in
  "") ;;
  --prune) prune=1 ;;
  -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2; exit 0 ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac
[ "$(id -u)" -eq 0 ] || die "must run as root"

KEY=$( { printf '%s\n%s\n' "$SUITE" "$PKGS"; cat "${BASH_SOURCE[0]}" "$HERE/lib.sh"; } | sha256sum | cut -c1-12)
IMAGE=$CACHE/vm-$KEY
SSH_KEY=$CACHE/ssh/id_ed25519

cache_ok() {
  [ -f "$IMAGE/built" ] && [ -f "$SSH_KEY.pub" ] &&
    cmp -s "$SSH_KEY.pub" "$IMAGE/rootfs/root/.ssh/authorized_keys"
}

mounts_below() { findmnt -rn -o TARGET | grep -F -- "$(realpath -- "$1")/" || true; }
remove_tree() {
  local d=$1
  [ -e "$d" ] || return 0
  [ -z "$(mounts_below "$d")" ] || { log "not removing $d: something is mounted below it"; return 1; }
  rm -rf --one-file-system -- "$d"
}
remove_build() {    # see rootfs.sh: an interrupted mmdebstrap unmounts its chroot's mounts late
  local d=$1 i
  [ -e "$d" ] || return 0
  for (( i = 0; i < 100; i++ )); do [ -n "$(mounts_below "$d")" ] || break; sleep 0.1; done
  mounts_below "$d" | sort -r | while IFS= read -r m; do umount -l -- "$m" || true; done
  remove_tree "$d"
}

# An image is in use while a VM of vm.sh (its disk overlay) or a box build (box.sh) refers to it.
in_use() {
  grep -qsxF "$1" "$VM_RUN"/*/image ||
    findmnt -rn -t overlay -o OPTIONS | tr ',' '\n' | grep -qxF "lowerdir=$1/rootfs"
}

prune_others() {
  local d
  for d in "$CACHE"/vm-*; do
    if [ ! -d "$d" ] || [ "$d" = "$IMAGE" ]; then continue; fi
    if in_use "$d"; then log "not pruning $d: a VM uses it"; continue; fi
    log "pruning $d"; remove_tree "$d"
  done
}

configure() {       # $1: freshly bootstrapped root; no boot, no mounts
  local r=$1
  echo "$HOSTNAME_" > "$r/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 %s\n::1 localhost ip6-localhost ip6-loopback\n' "$HOSTNAME_" > "$r/etc/hosts"
  printf 'LABEL=root / ext4 defaults,errors=remount-ro 0 1\n' > "$r/etc/fstab"
  : > "$r/etc/resolv.conf"               # mmdebstrap left the build machine's resolver here
  mkdir -p "$r/etc/systemd/network"
  printf '[Match]\nName=en* eth*\n[Network]\nDHCP=yes\n' > "$r/etc/systemd/network/80-dhcp.network"
  systemctl --root="$r" enable systemd-networkd.service >/dev/null 2>&1
  # wait-online would hold the boot when a NIC gets no lease; apt timers: no surprises in tests
  systemctl --root="$r" mask systemd-networkd-wait-online.service apt-daily.timer \
    apt-daily-upgrade.timer >/dev/null 2>&1
  : > "$r/etc/machine-id"                # a new id per boot: VMs from one image differ
  chroot "$r" useradd -m -s /bin/bash -G sudo vagrant
  chroot "$r" usermod -p '*' vagrant
  echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$r/etc/sudoers.d/vagrant"
  chmod 440 "$r/etc/sudoers.d/vagrant"
  install -d -m 700 "$r/root/.ssh" "$r/home/vagrant/.ssh"
  install -m 600 "$SSH_KEY.pub" "$r/root/.ssh/authorized_keys"
  install -m 600 "$SSH_KEY.pub" "$r/home/vagrant/.ssh/authorized_keys"
  chroot "$r" chown -R vagrant:vagrant /home/vagrant/.ssh
  echo 'UseDNS no' > "$r/etc/ssh/sshd_config.d/converge-e2e.conf"
  printf 'key=%s\nsuite=%s\npackages=%s\nbuilt=%s\n' "$KEY" "$SUITE" "$PKGS" "$(date -u +%FT%TZ)" \
    > "$r/etc/converge-e2e-vm"
}

if cache_ok; then
  [ $prune -eq 0 ] || { exec 9>"$CACHE/.vm.lock"; flock -w 900 9; prune_others; }
  log "cached: $IMAGE"
  echo "$IMAGE"
  exit 0
fi

mkdir -p "$CACHE/ssh"
# The key pair is rootfs.sh's: made under its lock when missing.
if [ ! -f "$SSH_KEY" ] || [ ! -f "$SSH_KEY.pub" ]; then
  (
    flock -w 900 9 || die "could not lock $CACHE/.lock"
    if [ ! -f "$SSH_KEY" ] || [ ! -f "$SSH_KEY.pub" ]; then
      rm -f "$SSH_KEY" "$SSH_KEY.pub"
      ssh-keygen -q -t ed25519 -N '' -C converge-e2e -f "$SSH_KEY"
    fi
  ) 9>"$CACHE/.lock"
fi

exec 9>"$CACHE/.vm.lock"
log "waiting for the cache lock $CACHE/.vm.lock"
flock -w 900 9 || die "could not lock $CACHE/.vm.lock within 900 s"
for d in "$CACHE"/.build-vm-*; do
  [ -e "$d" ] || continue
  log "removing stale $d"; remove_build "$d"
done

if ! cache_ok; then
  if [ -e "$IMAGE" ]; then
    ! in_use "$IMAGE" || die "the ssh key changed while VMs use $IMAGE: power them off first"
    remove_tree "$IMAGE"
  fi
  BUILD=$(mktemp -d "$CACHE/.build-vm-$KEY.XXXXXX")
  chmod 755 "$BUILD"    # mktemp makes it 0700: apt's _apt user could not download into it
  trap 'remove_build "$BUILD" || true' EXIT
  log "building $IMAGE (mmdebstrap $SUITE with a kernel, then a disk image; one to two minutes)"
  start=$(date +%s)
  mmdebstrap --mode=root --variant=apt --include="$PKGS" "$SUITE" "$BUILD/rootfs" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
    "deb $SECURITY_MIRROR $SUITE-security main" >&2 &
  MMDEBSTRAP=$!
  trap 'kill -INT "$MMDEBSTRAP" 2>/dev/null; wait "$MMDEBSTRAP"; exit 130' INT TERM HUP
  wait "$MMDEBSTRAP"
  trap - INT TERM HUP
  configure "$BUILD/rootfs"
  kernel=$(cd "$BUILD/rootfs/boot" && ls vmlinuz-* | sort -V | tail -n 1)
  cp "$BUILD/rootfs/boot/$kernel" "$BUILD/vmlinuz"
  cp "$BUILD/rootfs/boot/initrd.img-${kernel#vmlinuz-}" "$BUILD/initrd.img"
  make_disk "$BUILD/rootfs" "$BUILD/disk.img" "$SIZE_MB"
  printf '%s\n' "$KERNEL_CMDLINE" > "$BUILD/cmdline"
  date -u +%FT%TZ > "$BUILD/built"
  mv -T "$BUILD" "$IMAGE"
  trap - EXIT
  log "built in $(( $(date +%s) - start )) s: rootfs $(du -sh "$IMAGE/rootfs" | cut -f1), disk $(du -h "$IMAGE/disk.img" | cut -f1) used"
fi

[ $prune -eq 0 ] || prune_others
cache_ok || die "image at $IMAGE is incomplete"
log "ready: $IMAGE"
echo "$IMAGE"
