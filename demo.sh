#!/usr/bin/env bash
# The mission in one command: build converge, boot a throw-away Debian container with systemd
# (systemd-nspawn, no VM needed), converge playbooks/gunicorn.yml in it from nothing, print the page
# nginx serves from gunicorn, then run it again: no change. Needs root (nspawn) and Debian's
# packages (harness/install-deps.sh installs them); nothing else but Rust and this checkout.
#   sudo ./demo.sh
# The first run builds converge and caches a container image and the packages the container
# installs offline (a few minutes in all); later runs take seconds. The cache is
# ${CONVERGE_CACHE:-/var/cache/converge-e2e}, made by whichever step needs it first.
set -euo pipefail
cd "$(dirname "$0")"
[ "$(id -u)" = 0 ] || { echo "demo.sh needs root (systemd-nspawn): sudo ./demo.sh" >&2; exit 1; }

# One line per phase: what it does and how long it takes the first time; its time when done.
t0=$SECONDS
phase() { phase_start=$SECONDS; echo "== $*" >&2; }
took() { echo "   ($(( SECONDS - phase_start )) s)" >&2; }
# Runs a step with its log kept aside, shown only when it fails.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
quietly() { "$@" 2>"$log" || { cat "$log" >&2; echo "demo.sh: failed: $*" >&2; exit 1; }; }

phase "installing the harness's Debian packages (first time: ~10 s; then: instant)"
quietly harness/install-deps.sh; took
phase "building converge (cargo build --release; first time: ~5 min on 2 idle cores; then: a second, or minutes after a change)"
cargo build --release; took
phase "building the container image with mmdebstrap (first time: 1 to 3 min; then: cached)"
quietly harness/rootfs.sh >/dev/null; took
phase "downloading nginx's .debs and gunicorn's wheels for the offline container (first time: ~10 s; then: cached)"
artifacts=$(quietly harness/artifacts.sh | tail -n 1); took
name=converge-demo-$$
phase "booting a throw-away systemd container, copying converge, the playbooks and the packages in (~5 s)"
quietly harness/container.sh boot "$name" > /dev/null
trap 'rm -f "$log"; harness/container.sh poweroff "$name" >/dev/null 2>&1' EXIT
inside() { harness/container.sh exec "$name" "$@"; }
harness/container.sh copy-in "$name" target/release/converge /usr/local/bin/converge
harness/container.sh copy-in "$name" playbooks /root/playbooks
harness/container.sh copy-in "$name" "$artifacts/debs" /srv/debs
harness/container.sh copy-in "$name" "$artifacts/wheels" /srv/wheels
# A machine without nginx; its packages come from the local repository.
inside sh -c "apt-get purge -y -q nginx nginx-common >/dev/null 2>&1; rm -rf /etc/nginx /etc/apt/sources.list.d/*;
  echo 'deb [trusted=yes] file:/srv/debs ./' > /etc/apt/sources.list; apt-get update -q >/dev/null"
took

vars=(--var wheels=/srv/wheels --var offline=true)
phase "converge apply playbooks/gunicorn.yml (first run, from nothing: 6 s on an idle machine, 30 s on a busy one)"
inside converge apply /root/playbooks/gunicorn.yml "${vars[@]}"
for _ in $(seq 50); do page=$(inside curl -sS http://127.0.0.1/) && [ "$page" != "${page#Hello}" ] && break; sleep 0.1; done
took
echo "== curl http://127.0.0.1/ (nginx -> gunicorn.socket -> gunicorn)"
echo "$page"
phase "converge apply playbooks/gunicorn.yml (second run: no change, well under a second)"
inside converge apply /root/playbooks/gunicorn.yml "${vars[@]}"
took
echo "== demo done in $(( SECONDS - t0 )) s" >&2
