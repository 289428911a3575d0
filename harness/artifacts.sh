#!/usr/bin/env bash
# harness/artifacts.sh: downloads, once, what the scenario tests install inside containers that
# have no network: gunicorn's wheels (for the virtualenv, with find_links + no_index) and nginx's
# .debs as a flat local apt repository (the container starts without nginx, so the first apply
# really installs it), both through this machine's own pip and apt configuration.
# Cached under ${CONVERGE_CACHE:-/var/cache/converge-e2e}/artifacts; prints that path last.
# Built in .build-artifacts.XXXXXX and renamed into place, under the flock .artifacts.lock, so
# that parallel runs wait for one download instead of both downloading.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib/common.sh
. "$HERE/lib/common.sh"
LOG_PREFIX=artifacts
cache=$CACHE/artifacts
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
(cd "$tmp/debs" && apt-get download nginx nginx-common >&2 2>/dev/null) || (apt-get update -qq && cd "$tmp/debs" && apt-get download nginx nginx-common >&2)
(cd "$tmp/debs" && dpkg-scanpackages . > Packages 2>/dev/null)
touch "$tmp/.complete"
rm -rf "$cache"
mv -T "$tmp" "$cache"
trap - EXIT
echo "$cache"
