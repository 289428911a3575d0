#!/bin/bash
# harness/install-deps.sh: installs, with apt-get, the host tools the end-to-end harness uses
# (rootfs.sh, container.sh, selftest.sh) on a Debian 12 machine. Owns nothing else: it never
# changes apt sources or configuration. Idempotent: when every package is already installed it
# makes no network access and returns in well under a second.
#
#   tool                      package
#   mmdebstrap                mmdebstrap (+ debian-archive-keyring to verify the bookworm mirror)
#   systemd-nspawn            systemd-container
#   nsenter, setsid, flock,   util-linux
#   findmnt, mountpoint
#   mount, umount             mount (overlay roots; mmdebstrap mounts /proc,/sys,/dev in its chroot)
#   ip                        iproute2
#   ps                        procps
#   ssh, ssh-keygen           openssh-client
#   curl                      curl
#   sha256sum, cp, timeout    coreutils
#   pip download              python3-pip (artifacts.sh: gunicorn's wheels)
#   dpkg-scanpackages         dpkg-dev (artifacts.sh: the local apt repository of nginx's .debs)
#
# Needs root. Usage: harness/install-deps.sh
set -euo pipefail

PKGS=(mmdebstrap debian-archive-keyring systemd-container util-linux mount iproute2 procps
      openssh-client curl coreutils python3-pip dpkg-dev)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib/common.sh
. "$HERE/lib/common.sh"
LOG_PREFIX=install-deps

missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done

if [ ${#missing[@]} -eq 0 ]; then
  log "all present: ${PKGS[*]}"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || { log "need root to install: ${missing[*]}"; exit 1; }

export DEBIAN_FRONTEND=noninteractive
log "installing: ${missing[*]}"
# Refresh the package lists first: on a fresh machine they are empty or stale.
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null

for t in mmdebstrap systemd-nspawn nsenter setsid flock findmnt mountpoint mount ip ps ssh ssh-keygen curl \
         sha256sum dpkg-scanpackages; do
  command -v "$t" >/dev/null || { log "still missing after install: $t"; exit 1; }
done
log "done"
