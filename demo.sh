#!/usr/bin/env bash
# The mission in one command: build converge, boot a throw-away Debian container with systemd
# (systemd-nspawn, no VM needed), converge playbooks/gunicorn.yml in it from nothing, print the page
# nginx serves from gunicorn, then run it again: no change. Needs root (nspawn) and Debian's
# packages (mmdebstrap); the first run builds and caches the container image (about a minute).
#   sudo ./demo.sh
set -euo pipefail
cd "$(dirname "$0")"
[ "$(id -u)" = 0 ] || { echo "demo.sh needs root (systemd-nspawn): sudo ./demo.sh" >&2; exit 1; }
harness/install-deps.sh >&2
cargo build --release --quiet
artifacts=$(harness/artifacts.sh)      # nginx .debs and gunicorn wheels, so the container needs no network
name=converge-demo-$$
harness/container.sh boot "$name" > /dev/null
trap 'harness/container.sh poweroff "$name" >/dev/null' EXIT
inside() { harness/container.sh exec "$name" "$@"; }
harness/container.sh copy-in "$name" target/release/converge /usr/local/bin/converge
harness/container.sh copy-in "$name" playbooks /root/playbooks
harness/container.sh copy-in "$name" "$artifacts/debs" /srv/debs
harness/container.sh copy-in "$name" "$artifacts/wheels" /srv/wheels
# A machine without nginx; its packages come from the local repository.
inside sh -c "apt-get purge -y -q nginx nginx-common >/dev/null 2>&1; rm -rf /etc/nginx /etc/apt/sources.list.d/*;
  echo 'deb [trusted=yes] file:/srv/debs ./' > /etc/apt/sources.list; apt-get update -q >/dev/null"

vars=(--var wheels=/srv/wheels --var offline=true)
echo "== converge apply playbooks/gunicorn.yml (first run, from nothing)"
inside converge apply /root/playbooks/gunicorn.yml "${vars[@]}"
for _ in $(seq 50); do page=$(inside curl -sS http://127.0.0.1/) && [ "$page" != "${page#Hello}" ] && break; sleep 0.1; done
echo "== curl http://127.0.0.1/ (nginx -> gunicorn.socket -> gunicorn)"
echo "$page"
echo "== converge apply playbooks/gunicorn.yml (second run)"
inside converge apply /root/playbooks/gunicorn.yml "${vars[@]}"
