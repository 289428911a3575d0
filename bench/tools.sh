#!/usr/bin/env bash
# The other tools the benchmarks compare converge with, installed from PyPI into a throw-away
# virtualenv cached outside the checkout (never into the system's Python):
#   ansible-core  (ansible-playbook and its builtin modules: apt, pip, copy, template, file, systemd)
#   pyinfra
#   bench/tools.sh      install them when missing; print the virtualenv's bin dir as the last line
# Cache: ${CONVERGE_CACHE:-/var/cache/converge-e2e}/bench-tools-<hash of the pins>/ (a new pin gives
# a new venv; `.complete` is written last, so an interrupted install is redone, never half used).
set -euo pipefail
pins=(ansible-core==2.19.14 pyinfra==3.10.0)
cache=${CONVERGE_CACHE:-/var/cache/converge-e2e}
venv=$cache/bench-tools-$(printf '%s\n' "${pins[@]}" | sha256sum | cut -c1-12)
mkdir -p "$cache"
exec 9> "$cache/.bench-tools.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}" >&2
  touch "$venv/.complete"
fi
"$venv/bin/ansible-playbook" --version | head -1 >&2
"$venv/bin/pyinfra" --version >&2
echo "$venv/bin"
