#!/usr/bin/env bash
# The other tools the benchmarks compare converge with, installed from PyPI into a throw-away
# virtualenv cached outside the checkout (never into the system's Python):
#   ansible-core  (ansible-playbook and its builtin modules: apt, pip, copy, template, file, systemd)
#   pyinfra
# and the .debs of python3-apt for the harness's containers (CONVERGE_SUITE, bookworm unless it
# says trixie), which Ansible's apt module needs on the target (it installs it itself where a
# network lets it; the benchmarks' containers have none, so their prepare step installs these).
#   bench/tools.sh      install what is missing; print the virtualenv's bin dir as the last line
#   bench/tools.sh debs the same for the python3-apt .debs: print their directory
# Cache: ${CONVERGE_CACHE:-/var/cache/converge-e2e}/bench-tools-<hash of the pins>/ (a new pin gives
# a new venv) and bench-debs-SUITE/; `.complete` is written last, so an interrupted install is
# redone, never half used.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/../harness/lib/common.sh
. "$HERE/../harness/lib/common.sh"
# shellcheck source=SCRIPTDIR/../harness/lib/mirror.sh
. "$HERE/../harness/lib/mirror.sh"
# shellcheck source=SCRIPTDIR/../harness/lib/debian.sh
. "$HERE/../harness/lib/debian.sh"
LOG_PREFIX=bench-tools
mkdir -p "$CACHE"
lock_cache "$CACHE/.bench-tools.lock"

if [ "${1:-}" = debs ]; then
  debs=$CACHE/bench-debs-$SUITE
  if [ ! -f "$debs/.complete" ]; then
    rm -rf "$debs"
    mkdir -p "$debs/.apt/lists/partial" "$debs/.apt/cache/archives/partial"
    debian_mirrors "$SUITE"
    printf 'deb %s %s main\n' "$MIRROR" "$SUITE" > "$debs/.apt/sources.list"
    : > "$debs/.apt/status"
    apt_private=(-o "Dir::Etc::SourceList=$debs/.apt/sources.list" -o Dir::Etc::SourceParts=-
                 -o "Dir::State::Lists=$debs/.apt/lists" -o "Dir::Cache=$debs/.apt/cache"
                 -o "Dir::State::Status=$debs/.apt/status" -o APT::Sandbox::User=root)
    apt-get "${apt_private[@]}" update -qq >&2
    (cd "$debs" && apt-get "${apt_private[@]}" download python3-apt python-apt-common distro-info-data >&2)
    rm -rf "$debs/.apt"
    touch "$debs/.complete"
  fi
  echo "$debs"
  exit 0
fi

pins=(ansible-core==2.19.14 pyinfra==3.10.0)
venv=$CACHE/bench-tools-$(printf '%s\n' "${pins[@]}" | sha256sum | cut -c1-12)
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}" >&2
  touch "$venv/.complete"
fi
version=$("$venv/bin/ansible-playbook" --version)
echo "${version%%$'\n'*}" >&2
"$venv/bin/pyinfra" --version >&2
echo "$venv/bin"
