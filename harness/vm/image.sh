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
# <key> = the first 12 hex digits of sha256(suite + package list + the functions that build and
# configure the image, make_disk's included, as bash prints them: lib/debian.sh tree_key).
#
# The machine differs from the container rootfs in what a VM needs and in one thing the scenario
# needs: it has linux-image-cloud-amd64 (virtio built for VMs, small initrd), udev, kmod, rsync (for
# Vagrant's rsync synced folder), systemd-networkd with DHCP on en*/eth*, an fstab mounting
# LABEL=root, and NO nginx: a fresh VM starts without it, so the first `converge apply` really
# installs it (from a local apt repository the test copies in). Like the rootfs: hostname
# convergee2e, user vagrant (group sudo, sudo without password, login by key only), the harness
# key for root and vagrant, `UseDNS no`, masked wait-online and apt timers, an empty machine-id.
# Downloads from the mirror this machine's apt uses (lib/mirror.sh; CONVERGE_MIRROR and
# CONVERGE_SECURITY_MIRROR override it). Needs root and harness/vm/install-deps.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source=SCRIPTDIR/../lib/mirror.sh
. "$HERE/../lib/mirror.sh"
# shellcheck source=SCRIPTDIR/../lib/debian.sh
. "$HERE/../lib/debian.sh"
# shellcheck source=SCRIPTDIR/../lib/disk.sh
. "$HERE/../lib/disk.sh"
LOG_PREFIX=vm/image
PKGS=systemd,systemd-sysv,dbus,udev,kmod,linux-image-cloud-amd64,initramfs-tools,openssh-server,python3-venv,python3-pip,sudo,curl,procps,iproute2,ca-certificates,passwd,netbase,rsync
SIZE_MB=4096
VM_RUN=${CONVERGE_VM_RUN_DIR:-/var/tmp/converge-e2e-vm}

build_args "$@"
need_root

configure() {       # $1: freshly bootstrapped root; no boot, no mounts
  local r=$1
  configure_machine "$r"
  printf 'LABEL=root / ext4 defaults,errors=remount-ro 0 1\n' > "$r/etc/fstab"
  : > "$r/etc/resolv.conf"               # mmdebstrap left the build machine's resolver here
  mkdir -p "$r/etc/systemd/network"
  printf '[Match]\nName=en* eth*\n[Network]\nDHCP=yes\n' > "$r/etc/systemd/network/80-dhcp.network"
  systemctl --root="$r" enable systemd-networkd.service >/dev/null 2>&1
  : > "$r/etc/machine-id"                # a new id per boot: VMs from one image differ
  printf 'key=%s\nsuite=%s\npackages=%s\nbuilt=%s\n' "$KEY" "$SUITE" "$PKGS" "$(date -u +%FT%TZ)" \
    > "$r/etc/converge-e2e-vm"
}

build() {           # $1: the build directory -> rootfs/, vmlinuz, initrd.img, disk.img, cmdline, built
  local b=$1 kernel
  bootstrap "$PKGS" "$b/rootfs"
  configure "$b/rootfs"
  kernel=$(find "$b/rootfs/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sort -V | tail -n 1)
  cp "$b/rootfs/boot/$kernel" "$b/vmlinuz"
  cp "$b/rootfs/boot/initrd.img-${kernel#vmlinuz-}" "$b/initrd.img"
  make_disk "$b/rootfs" "$b/disk.img" "$SIZE_MB"
  printf '%s\n' "$KERNEL_CMDLINE" > "$b/cmdline"
  date -u +%FT%TZ > "$b/built"
}

KEY=$(tree_key "$PKGS $SIZE_MB $KERNEL_CMDLINE" bootstrap configure_machine authorize_key configure build make_disk)
IMAGE=$CACHE/vm-$KEY

cache_ok() {
  [ -f "$IMAGE/built" ] && [ -f "$SSH_KEY.pub" ] &&
    cmp -s "$SSH_KEY.pub" "$IMAGE/rootfs/root/.ssh/authorized_keys"
}

# An image is in use while a VM of vm.sh (its disk overlay) or a box build (box.sh) refers to it.
in_use() {
  grep -qsxF "$1" "$VM_RUN"/*/image ||
    findmnt -rn -t overlay -o OPTIONS | tr ',' '\n' | grep -qxF "lowerdir=$1/rootfs"
}

if cache_ok; then
  [ $prune -eq 0 ] || { lock_cache "$CACHE/.vm.lock"; prune_cached "$IMAGE" "a VM"; }
  log "cached: $IMAGE"
  echo "$IMAGE"
  exit 0
fi

# The key pair is rootfs.sh's: made under its lock when missing.
if [ ! -f "$SSH_KEY" ] || [ ! -f "$SSH_KEY.pub" ]; then
  ( lock_cache "$CACHE/.lock"; ensure_ssh_key )
fi

log "waiting for the cache lock $CACHE/.vm.lock"
lock_cache "$CACHE/.vm.lock"
remove_stale_builds vm

if ! cache_ok; then
  if [ -e "$IMAGE" ]; then
    ! in_use "$IMAGE" || die "the ssh key changed while VMs use $IMAGE: power them off first"
    remove_tree "$IMAGE"
  fi
  new_build vm "$KEY"
  log "building $IMAGE (mmdebstrap $SUITE with a kernel, then a disk image; one to two minutes)"
  start=$(date +%s)
  build "$BUILD"
  mv -T "$BUILD" "$IMAGE"
  done_build
  log "built in $(( $(date +%s) - start )) s: rootfs $(du -sh "$IMAGE/rootfs" | cut -f1), disk $(du -h "$IMAGE/disk.img" | cut -f1) used"
fi

[ $prune -eq 0 ] || prune_cached "$IMAGE" "a VM"
cache_ok || die "image at $IMAGE is incomplete"
log "ready: $IMAGE"
echo "$IMAGE"
