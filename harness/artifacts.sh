#!/usr/bin/env bash
# Downloads, once, what the scenario tests install inside containers that have no network:
# gunicorn's wheels (for the virtualenv, with find_links + no_index) and nginx's .debs as a flat
# local apt repository (the container starts without nginx, so the first apply really installs it).
# Cached under ${CONVERGE_CACHE:-/var/cache/converge-e2e}/artifacts; prints that path last.
set -euo pipefail
cache=${CONVERGE_CACHE:-/var/cache/converge-e2e}/artifacts
if [ -f "$cache/.complete" ]; then
  echo "$cache"
  exit 0
fi
mkdir -p "${cache%/*}"      # the first of the harness scripts to need the cache makes it
tmp=$(mktemp -d "${cache%/*}/.artifacts.XXXXXX")
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
