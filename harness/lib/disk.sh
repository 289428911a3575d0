# harness/lib/disk.sh: a bootable disk image made from a directory, for vm/image.sh and vm/box.sh
# (sourced, never run).
# shellcheck shell=bash

# make_disk SRC OUT SIZE_MB: a BIOS-bootable raw disk image OUT from the root directory SRC,
# without loop devices or mounts: an MBR partition table (sfdisk on the file), one ext4 partition
# labelled `root` written at a 1 MiB offset straight from SRC (mkfs.ext4 -E offset -d), GRUB's
# boot.img in the MBR and its core.img right after it (its built-in blocklist already points at
# sector 2). GRUB's modules and grub.cfg are added to SRC/boot/grub first: SRC must be writable.
# The kernel is SRC's /boot/vmlinuz-* with its initrd; console on ttyS0 and tty0.
make_disk() {
  local src=$1 out=$2 size_mb=$3 kernel initrd
  kernel=$(find "$src/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sort -V | tail -n 1)
  initrd=initrd.img-${kernel#vmlinuz-}
  [ -f "$src/boot/$initrd" ] || { echo "make_disk: no $src/boot/$initrd" >&2; return 1; }
  mkdir -p "$src/boot/grub/i386-pc"
  cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst "$src/boot/grub/i386-pc/"
  cat > "$src/boot/grub/grub.cfg" <<GRUB
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
menuentry 'Debian (converge e2e)' {
  linux /boot/$kernel $KERNEL_CMDLINE console=tty0
  initrd /boot/$initrd
}
GRUB
  rm -f "$out" "$out.core"
  truncate -s "${size_mb}M" "$out"
  printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$out"
  mkfs.ext4 -q -F -L root -E offset=$(( 2048 * 512 )) -d "$src" "$out" $(( (size_mb - 1) * 1024 ))k
  grub-mkimage -O i386-pc -o "$out.core" -p '(hd0,msdos1)/boot/grub' \
    biosdisk part_msdos ext2 normal linux configfile search search_label echo test boot serial terminal
  [ "$(stat -c %s "$out.core")" -lt $(( 2047 * 512 )) ] || { echo "make_disk: core.img too big" >&2; return 1; }
  dd if=/usr/lib/grub/i386-pc/boot.img of="$out" bs=440 count=1 conv=notrunc status=none
  dd if="$out.core" of="$out" bs=512 seek=1 conv=notrunc status=none
  rm -f "$out.core"
}

# The kernel command line of both boot paths (GRUB in the disk, QEMU's -kernel in vm.sh).
KERNEL_CMDLINE="root=LABEL=root ro console=ttyS0,115200n8 net.ifnames=1"
