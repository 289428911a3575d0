#!/usr/bin/env bash
# First apply of playbooks/gunicorn.yml from nothing, in a fresh harness container each run
# (hyperfine, --prepare boots it): nginx from a local apt repository, gunicorn from local wheels,
# as tests/integration/scenario_e2e.rs sets it up. Four ways:
#   pip, one at a time   no uv in the container (installer: auto is pip), --jobs 1
#   pip, parallel        no uv, --jobs 4 (the venv waits for apt all the same: pip needs python3-venv)
#   uv, one at a time    uv (harness/uv.sh) in /usr/local/bin, --jobs 1
#   uv, parallel         uv, --jobs 4: apt and the venv at once
# Each run is checked: nginx serves the app's page, and a second apply changes nothing. Then the
# steps of one run of each (duration_ms of the JSON records): apt's, the venv's, the slowest.
# Run from the repo root, as root:  bench/first-apply.sh [RUNS]   (default 5)
# Needs hyperfine, harness/install-deps.sh; builds the release binary, the rootfs, the artifacts
# and uv when they are not cached. Writes only under a temp dir and the harness's run dir.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/converge
harness/rootfs.sh > /dev/null
artifacts=$(harness/artifacts.sh | tail -1)
uv=$(harness/uv.sh | tail -1)
work=$(mktemp -d /tmp/converge-bench-first.XXXXXX)
name=bench-first-$$
trap 'harness/container.sh poweroff "$name" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
offline=(--var wheels=/srv/wheels --var offline=true)

# fresh WITH_UV: a new container named $name, set up as the scenario test's (no nginx).
cat > "$work/fresh" <<SH
#!/usr/bin/env bash
set -euo pipefail
cd "$PWD"
harness/container.sh poweroff "$name" >/dev/null 2>&1 || true
harness/container.sh boot "$name" > /dev/null
inside() { harness/container.sh exec "$name" "\$@"; }
inside sh -c 'apt-get purge -y -q nginx nginx-common >/dev/null 2>&1; rm -rf /etc/nginx /etc/apt/sources.list.d/*'
harness/container.sh copy-in "$name" "$bin" /usr/local/bin/converge
harness/container.sh copy-in "$name" playbooks /root/playbooks
harness/container.sh copy-in "$name" "$artifacts/debs" /srv/debs
harness/container.sh copy-in "$name" "$artifacts/wheels" /srv/wheels
inside sh -c "echo 'deb [trusted=yes] file:/srv/debs ./' > /etc/apt/sources.list && apt-get update -q >/dev/null"
[ "\$1" = uv ] && harness/container.sh copy-in "$name" "$uv" /usr/local/bin/uv
exit 0
SH
chmod +x "$work/fresh"
apply() { echo "harness/container.sh exec $name converge apply /root/playbooks/gunicorn.yml ${offline[*]} -q --jobs $1"; }

variants=("pip 1" "pip 4" "uv 1" "uv 4")
args=()
for v in "${variants[@]}"; do
  set -- $v
  label="$1, $( [ "$2" = 1 ] && echo 'one at a time' || echo parallel)"
  args+=(--prepare "$work/fresh $1" -n "$label" "$(apply "$2")")
done
hyperfine --runs "$runs" -N --export-json "$work/result.json" --export-markdown "$work/result.md" "${args[@]}"

# One more run of each, for its steps and to check what it made.
for v in "${variants[@]}"; do
  set -- $v
  "$work/fresh" "$1"
  harness/container.sh exec "$name" converge apply /root/playbooks/gunicorn.yml "${offline[@]}" --jobs "$2" \
    --output json > "$work/steps.json"
  page=$(harness/container.sh exec "$name" curl -s http://localhost/)
  grep -q "Hello from gunicorn" <<< "$page" || { echo "$v: no page from nginx: $page" >&2; exit 1; }
  harness/container.sh exec "$name" converge plan /root/playbooks/gunicorn.yml "${offline[@]}" -q > /dev/null \
    || { echo "$v: the second plan is not empty" >&2; exit 1; }
  python3 - "$work/steps.json" "$v" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
applied = {r["id"].split(":")[0]: r for r in records if r["type"] == "applied"}
steps = {r["id"]: r["duration_ms"] for r in records if r["type"] == "applied"}
apt = next(ms for id, ms in steps.items() if id.startswith("apt:"))
venv = next(ms for id, ms in steps.items() if id.startswith("virtualenv:"))
others = max(ms for id, ms in steps.items() if not id.startswith("apt:"))
end = max(r["started_ms"] + r["duration_ms"] for r in records if r["type"] == "applied")
print(f"{sys.argv[2]:6}  apt {apt} ms, venv {venv} ms, apt + slowest other {apt + others} ms, resources done at {end} ms")
PY
done
echo
cat "$work/result.md"
echo
echo "($(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
