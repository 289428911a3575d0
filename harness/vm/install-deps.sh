#!/bin/bash
# harness/vm/install-deps.sh: installs, with apt-get, the host tools of the two VM tiers (QEMU VM
# and Vagrant + libvirt) on a Debian 12 machine, on top of harness/install-deps.sh (which it runs
# first). Idempotent: when every package is there it makes no network access (well under a second).
#
#   tool                                   package
#   qemu-system-x86_64                     qemu-system-x86, from bookworm-backports (see below)
#   qemu-img                               qemu-utils
#   mkfs.ext4 -d (image without mounts)    e2fsprogs
#   sfdisk                                 fdisk
#   grub-mkimage + i386-pc modules         grub-common, grub-pc-bin (GRUB goes into the image only;
#                                          nothing is installed on the host's boot disk)
#   ssh, scp                               openssh-client
#   vagrant, vagrant-libvirt               vagrant, vagrant-libvirt (+ rsync for its synced folder)
#   libvirtd, virtlogd, virsh              libvirt-daemon-system, libvirt-daemon-driver-qemu,
#                                          libvirt-clients
#   the NAT network libvirt makes          dnsmasq-base, iptables
#
# qemu-system-x86: these machines ship qemu-utils 10 from bookworm-backports, and bookworm's own
# qemu-system-x86 7.2 conflicts with it (qemu-utils Breaks qemu-system-common < 8.0). When the
# installed qemu-utils is from 8 on, qemu-system-x86 is taken from bookworm-backports: the one apt
# source this script may add, /etc/apt/sources.list.d/converge-bookworm-backports.sources
# (backports are never preferred by apt: only what is asked for with -t comes from there), on the
# mirror of the main archive that apt already uses (lib/mirror.sh; CONVERGE_MIRROR overrides it).
#
# Needs root. Usage: harness/vm/install-deps.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source=SCRIPTDIR/../lib/mirror.sh
. "$HERE/../lib/mirror.sh"
LOG_PREFIX=vm/install-deps
BACKPORTS=/etc/apt/sources.list.d/converge-bookworm-backports.sources
PKGS=(qemu-utils e2fsprogs fdisk grub-common grub-pc-bin openssh-client rsync
      vagrant vagrant-libvirt libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
      dnsmasq-base iptables)

"$HERE/../install-deps.sh"

missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
installed qemu-system-x86 || missing+=(qemu-system-x86)

if [ ${#missing[@]} -eq 0 ]; then
  log "all present: qemu-system-x86 ${PKGS[*]}"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { log "need root to install: ${missing[*]}"; exit 1; }

export DEBIAN_FRONTEND=noninteractive
APT=(apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confdef
     -o Dpkg::Options::=--force-confold)
log "installing: ${missing[*]}"
if ! installed qemu-system-x86; then
  qemu_utils=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || echo 0)
  if installed qemu-utils && dpkg --compare-versions "$qemu_utils" ge 1:8; then
    if [ ! -f "$BACKPORTS" ]; then
      debian_mirrors bookworm     # the main archive this machine's apt uses (lib/mirror.sh)
      printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$MIRROR" > "$BACKPORTS"
    fi
    apt-get update -qq
    "${APT[@]}" -t bookworm-backports qemu-system-x86 >/dev/null
  else
    apt-get update -qq
    "${APT[@]}" qemu-system-x86 qemu-utils >/dev/null
  fi
else
  apt-get update -qq
fi
rest=()
for p in "${PKGS[@]}"; do installed "$p" || rest+=("$p"); done
[ ${#rest[@]} -eq 0 ] || "${APT[@]}" "${rest[@]}" >/dev/null

for t in qemu-system-x86_64 qemu-img mkfs.ext4 sfdisk grub-mkimage ssh scp rsync vagrant libvirtd \
         virtlogd virsh dnsmasq iptables; do
  command -v "$t" >/dev/null || { log "still missing after install: $t"; exit 1; }
done
[ -d /usr/lib/grub/i386-pc ] || { log "still missing after install: /usr/lib/grub/i386-pc"; exit 1; }
vagrant plugin list 2>/dev/null | grep -q vagrant-libvirt || { log "vagrant does not list vagrant-libvirt"; exit 1; }
log "done"
