#!/bin/bash
# harness/vm/box.sh: owns the local Vagrant box of the Vagrant tier, built from the VM image's
# rootfs (image.sh), and its installation in the harness's own VAGRANT_HOME.
#
#   harness/vm/box.sh      build the box if it is not cached, add it to VAGRANT_HOME if that does
#                          not hold this very build yet; print the box name as the last line
#
# Cache: ${CONVERGE_CACHE:-/var/cache/converge-e2e}/
#   box-<key>/converge-e2e.box   the box: a tar of metadata.json (provider libvirt, qcow2),
#                                a Vagrantfile (virtio disk) and box.img (qcow2)
#   vagrant.d/                   VAGRANT_HOME of the tests (boxes added here, never in ~/.vagrant.d)
#   .box.lock                    flock: one build at a time
# <key> = sha256 of the image's directory name, this script, Vagrant's insecure public key and the
# offline artifacts' names and sizes (harness/artifacts.sh).
#
# The box is the image's rootfs plus what a Vagrant box has and the offline scenario needs:
# Vagrant's well-known insecure public key authorized for `vagrant` (Vagrant replaces it with a
# key of its own on the first `vagrant up`), and, since the VM reaches no archive, a local apt
# repository as its only source (/srv/debs: nginx's .debs, lists already fetched) and gunicorn's
# wheels in /srv/wheels. It is made without booting or loop devices: an overlay mount over the
# read-only rootfs takes the additions, mkfs.ext4 -d writes the disk from it (lib/disk.sh make_disk).
# Environment: CONVERGE_CACHE, CONVERGE_BOX (the box name, converge-e2e-debian12), VAGRANT_HOME
# (default $CACHE/vagrant.d). Needs root and harness/vm/install-deps.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source=SCRIPTDIR/../lib/disk.sh
. "$HERE/../lib/disk.sh"
LOG_PREFIX=vm/box
BOX_NAME=${CONVERGE_BOX:-converge-e2e-debian12}
export VAGRANT_HOME=${VAGRANT_HOME:-$CACHE/vagrant.d}
SIZE_MB=4096

case "${1:-}" in
  "") ;;
  -h|--help) usage; exit 0 ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac
need_root

image=$("$HERE/image.sh" | tail -n 1)
artifacts=$("$HERE/../artifacts.sh" | tail -n 1)
insecure=
for f in /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub; do
  [ ! -f "$f" ] || { insecure=$f; break; }
done
[ -n "$insecure" ] || die "no vagrant.pub of Vagrant's (harness/vm/install-deps.sh installs vagrant)"
KEY=$( { basename "$image"; cat "${BASH_SOURCE[0]}" "$insecure";
         (cd "$artifacts" && find debs wheels -type f -printf '%p %s\n' | sort); } | sha256sum | cut -c1-12)
DIR=$CACHE/box-$KEY
BOX=$DIR/converge-e2e.box

lock_cache "$CACHE/.box.lock"

if [ ! -f "$BOX" ]; then
  start=$(date +%s)
  for d in "$CACHE"/.build-box-*; do
    [ -e "$d" ] || continue
    if mountpoint -q "$d/merged"; then umount "$d/merged"; fi
    rm -rf --one-file-system -- "$d"
  done
  BUILD=$(mktemp -d "$CACHE/.build-box-$KEY.XXXXXX")
  cleanup() {
    if mountpoint -q "$BUILD/merged"; then umount "$BUILD/merged" || umount -l "$BUILD/merged"; fi
    rm -rf --one-file-system -- "$BUILD"
  }
  trap cleanup EXIT
  mkdir -p "$BUILD/upper" "$BUILD/work" "$BUILD/merged" "$BUILD/box"
  # image.sh --prune leaves an image alone while this overlay names its rootfs
  mount -t overlay overlay -o "lowerdir=$image/rootfs,upperdir=$BUILD/upper,workdir=$BUILD/work" "$BUILD/merged"
  m=$BUILD/merged
  cat "$insecure" >> "$m/home/vagrant/.ssh/authorized_keys"
  mkdir -p "$m/srv"
  cp -r "$artifacts/debs" "$m/srv/debs"
  cp -r "$artifacts/wheels" "$m/srv/wheels"
  rm -f "$m/etc/apt/sources.list.d/"*
  echo 'deb [trusted=yes] file:/srv/debs ./' > "$m/etc/apt/sources.list"
  chroot "$m" apt-get update -qq >&2
  make_disk "$m" "$BUILD/disk.img" "$SIZE_MB"
  umount "$m"
  qemu-img convert -O qcow2 "$BUILD/disk.img" "$BUILD/box/box.img"
  printf '{"provider":"libvirt","format":"qcow2","virtual_size":%d}\n' $(( SIZE_MB / 1024 )) > "$BUILD/box/metadata.json"
  cat > "$BUILD/box/Vagrantfile" <<'EOF'
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
  end
end
EOF
  tar -C "$BUILD/box" -cf "$BUILD/converge-e2e.box" metadata.json Vagrantfile box.img
  rm -f "$BUILD/disk.img"
  mkdir -p "$DIR"
  mv "$BUILD/converge-e2e.box" "$BOX"
  cleanup
  trap - EXIT
  for d in "$CACHE"/box-*; do [ "$d" = "$DIR" ] || rm -rf --one-file-system -- "$d"; done
  log "built $BOX in $(( $(date +%s) - start )) s ($(du -h "$BOX" | cut -f1))"
fi

# add it to VAGRANT_HOME unless this very build is there already
mkdir -p "$VAGRANT_HOME"
if [ "$(cat "$VAGRANT_HOME/converge-e2e-box.$BOX_NAME" 2>/dev/null)" != "$KEY" ] ||
   ! vagrant box list 2>/dev/null | grep -q "^$BOX_NAME "; then
  log "vagrant box add $BOX_NAME (VAGRANT_HOME=$VAGRANT_HOME)"
  vagrant box add --force --name "$BOX_NAME" --provider libvirt "$BOX" >&2
  echo "$KEY" > "$VAGRANT_HOME/converge-e2e-box.$BOX_NAME"
fi
log "ready: box $BOX_NAME"
echo "$BOX_NAME"
