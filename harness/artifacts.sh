#!/usr/bin/env bash
# harness/artifacts.sh: downloads, once, what the scenario tests install inside containers that
# have no network: gunicorn's wheels (for the virtualenv, with find_links + no_index) and nginx's
# .debs as a flat local apt repository (the container starts without nginx, so the first apply
# really installs it), both through this machine's own pip and apt configuration.
# The .debs are those of the containers' Debian release (CONVERGE_SUITE, as rootfs.sh: bookworm
# unless it says trixie), fetched with a private apt configuration (its own sources.list naming
# that suite on this machine's mirror, lib/mirror.sh, and its own lists), whatever release this
# machine runs. Cached under ${CONVERGE_CACHE:-/var/cache/converge-e2e}/artifacts (bookworm) or
# artifacts-SUITE; prints that path last.
# Built in .build-artifacts.XXXXXX and renamed into place, under the flock .artifacts.lock, so
# that parallel runs wait for one download instead of both downloading.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib/common.sh
. "$HERE/lib/common.sh"
# shellcheck source=SCRIPTDIR/lib/mirror.sh
. "$HERE/lib/mirror.sh"
# shellcheck source=SCRIPTDIR/lib/debian.sh
. "$HERE/lib/debian.sh"
LOG_PREFIX=artifacts
cache=$CACHE/artifacts
[ "$SUITE" = bookworm ] || cache=$CACHE/artifacts-$SUITE
if [ -f "$cache/.complete" ]; then
  echo "$cache"
  exit 0
fi
lock_cache "$CACHE/.artifacts.lock"   # the first of the harness scripts to need the cache makes it
if [ -f "$cache/.complete" ]; then    # made by another run while this one waited
  echo "$cache"
  exit 0
fi
for d in "$CACHE"/.build-artifacts.*; do   # we hold the lock: left over from a killed run
  [ ! -e "$d" ] || rm -rf --one-file-system -- "$d"
done
tmp=$(mktemp -d "$CACHE/.build-artifacts.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/wheels" "$tmp/debs"
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp/wheels" gunicorn==23.0.0 packaging==24.2 >&2
debian_mirrors "$SUITE"
apt_dir=$tmp/.apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
{ # the sources rootfs.sh builds from (lib/debian.sh bootstrap): the same versions
  printf 'deb %s %s main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE-updates"
  [ -z "$SECURITY_MIRROR" ] || printf 'deb %s %s-security main\n' "$SECURITY_MIRROR" "$SUITE"
} > "$apt_dir/sources.list"
: > "$apt_dir/status"   # nothing installed: candidates come from these sources alone
apt_private=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=-
             -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
             -o "Dir::State::Status=$apt_dir/status" -o APT::Sandbox::User=root)
apt-get "${apt_private[@]}" update -qq >&2
(cd "$tmp/debs" && apt-get "${apt_private[@]}" download nginx nginx-common >&2)
rm -rf "$apt_dir"
(cd "$tmp/debs" && dpkg-scanpackages . > Packages 2>/dev/null)
touch "$tmp/.complete"
rm -rf "$cache"
mv -T "$tmp" "$cache"
trap - EXIT
echo "$cache"
