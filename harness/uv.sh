#!/usr/bin/env bash
# harness/uv.sh: fetches uv, once, from PyPI (its wheel holds one static binary, which runs on
# this machine and inside the containers alike) for the tests and benchmarks of the virtualenv
# kind's `installer: uv`. Cached as ${CONVERGE_CACHE:-/var/cache/converge-e2e}/uv-VERSION/uv;
# prints that path last. Built in .build-uv.XXXXXX and renamed into place under the flock
# .uv.lock, so that parallel runs wait for one download.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib/common.sh
. "$HERE/lib/common.sh"
LOG_PREFIX=uv
VERSION=0.13.9
cache=$CACHE/uv-$VERSION
if [ -x "$cache/uv" ]; then
  echo "$cache/uv"
  exit 0
fi
mkdir -p "$CACHE"
lock_cache "$CACHE/.uv.lock"
if [ -x "$cache/uv" ]; then
  echo "$cache/uv"
  exit 0
fi
tmp=$(mktemp -d "$CACHE/.build-uv.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "uv==$VERSION" >&2
# The wheel's uv-VERSION.data/scripts/uv is the binary (uvx beside it is not needed).
python3 - "$tmp" <<'PY'
import pathlib, sys, zipfile
tmp = pathlib.Path(sys.argv[1])
wheel = next(tmp.glob("uv-*.whl"))
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/uv"))
    (tmp / "uv").write_bytes(z.read(name))
(tmp / "uv").chmod(0o755)
wheel.unlink()
PY
"$tmp/uv" --version >&2
chmod 755 "$tmp"   # mktemp made it 0700: the venvs' owners run uv too
rm -rf "$cache"
mv -T "$tmp" "$cache"
trap - EXIT
echo "$cache/uv"
