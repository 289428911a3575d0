#!/usr/bin/env bash
# First apply of playbooks/gunicorn.yml from nothing, in a fresh harness container each run
# (hyperfine, --prepare boots it): nginx from a local apt repository, gunicorn from local wheels,
# as tests/integration/scenario_e2e.rs sets it up. Six ways:
#   converge, pip, one at a time   no uv in the container (installer: auto is pip), --jobs 1
#   converge, pip, parallel        no uv, --jobs 4 (the venv waits for apt all the same: pip needs python3-venv)
#   converge, uv, one at a time    uv (harness/uv.sh) in /usr/local/bin, --jobs 1
#   converge, uv, parallel         uv, --jobs 4: apt and the venv at once
#   Ansible                        bench/gunicorn/ansible.yml over ssh: pipelining, ControlPersist
#   pyinfra                        bench/gunicorn/pyinfra_deploy.py over ssh
# converge runs inside the container (as on a VM it provisions, and as the static binary `--host`
# uploads runs); Ansible and pyinfra from this machine through a network namespace made here
# (10.232.0.2 exists only inside it), installed by bench/tools.sh into a throw-away virtualenv.
# Each tool's result is checked on one more run: nginx serves the app's page, the unit files are
# converge's byte for byte, and a second run changes nothing. Ansible's apt module needs python3-apt
# on the target: the prepare step installs it (bench/tools.sh debs), outside the timing. Then the steps of converge's runs
# (duration_ms of the JSON records): apt's, the venv's, the slowest.
# Run from the repo root, as root:  bench/first-apply.sh [RUNS]   (default 5)
#   ONLY=converge|ansible|pyinfra bench/first-apply.sh   no timing: only check that tool's result
#   CONVERGE_BIN=PATH bench/first-apply.sh   use that converge instead of building target/release
# Needs hyperfine, harness/install-deps.sh; builds the release binary, the rootfs, the artifacts,
# uv and the tools' virtualenv when they are not cached. Writes only under a temp dir, the
# harness's run dir and its cache.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
if [ -n "${CONVERGE_BIN:-}" ]; then bin=$CONVERGE_BIN   # a converge built elsewhere (a release build)
else cargo build --release --quiet; bin=${CARGO_TARGET_DIR:-$PWD/target}/release/converge; fi
harness/rootfs.sh > /dev/null
artifacts=$(harness/artifacts.sh | tail -1)
uv=$(harness/uv.sh | tail -1)
tools=$(bench/tools.sh 2> /dev/null | tail -1)
apt_debs=$(bench/tools.sh debs | tail -1)
key=${CONVERGE_CACHE:-/var/cache/converge-e2e}/ssh/id_ed25519
work=$(mktemp -d /tmp/converge-bench-first.XXXXXX)
name=bench-first-$$
ns=cvfirst-$$
trap 'harness/container.sh poweroff "$name" >/dev/null 2>&1 || true; ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"' EXIT
ip netns add "$ns"
offline=(--var wheels=/srv/wheels --var offline=true)

# fresh pip|uv|ansible|pyinfra: a new container named $name, set up as the scenario test's (no
# nginx, a local apt repository), wired to $ns; converge in it for pip and uv, and uv for uv.
cat > "$work/fresh" <<FRESH
#!/usr/bin/env bash
set -euo pipefail
cd "$PWD"
harness/container.sh poweroff "$name" >/dev/null 2>&1 || true
leader=\$(harness/container.sh boot "$name" 2>/dev/null | tail -n 1)
ip link add h0 netns "$ns" type veth peer name cv0 netns "\$leader"
ip -n "$ns" addr add 10.232.0.1/24 dev h0
ip -n "$ns" link set h0 up
nsenter -t "\$leader" -n ip addr add 10.232.0.2/24 dev cv0
nsenter -t "\$leader" -n ip link set cv0 up
inside() { harness/container.sh exec "$name" "\$@"; }
inside sh -c 'apt-get purge -y -q nginx nginx-common >/dev/null 2>&1; rm -rf /etc/nginx /etc/apt/sources.list.d/*'
harness/container.sh copy-in "$name" "$artifacts/debs" /srv/debs
harness/container.sh copy-in "$name" "$artifacts/wheels" /srv/wheels
inside sh -c "echo 'deb [trusted=yes] file:/srv/debs ./' > /etc/apt/sources.list && apt-get update -q >/dev/null"
case "\$1" in pip|uv) harness/container.sh copy-in "$name" "$bin" /usr/local/bin/converge
                    harness/container.sh copy-in "$name" playbooks /root/playbooks ;; esac
[ "\$1" = uv ] && harness/container.sh copy-in "$name" "$uv" /usr/local/bin/uv
# Ansible's apt module needs python3-apt on the target: installed here, outside the timing.
if [ "\$1" = ansible ]; then
  harness/container.sh copy-in "$name" "$apt_debs" /root/apt-debs
  inside sh -c 'dpkg -i /root/apt-debs/*.deb >/dev/null'
fi
exit 0
FRESH
chmod +x "$work/fresh"

# Ansible and pyinfra reach the container as root with the harness's key, host keys unchecked (a
# new container each run), each at its documented settings for speed.
cat > "$work/ssh_config" <<CONF
Host *
  User root
  IdentityFile $key
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
CONF
cat > "$work/ansible.cfg" <<CONF
[defaults]
inventory = $work/hosts.ini
host_key_checking = False
interpreter_python = /usr/bin/python3
[ssh_connection]
pipelining = True
ssh_args = -F $work/ssh_config -o ControlMaster=auto -o ControlPersist=60s
control_path_dir = $work/cp
CONF
echo "10.232.0.2 ansible_user=root ansible_ssh_private_key_file=$key" > "$work/hosts.ini"
cat > "$work/inventory.py" <<CONF
hosts = [("10.232.0.2", {"ssh_user": "root", "ssh_key": "$key",
                         "ssh_strict_host_key_checking": "off",
                         "ssh_known_hosts_file": "/dev/null"})]
CONF

converge() { echo "harness/container.sh exec $name converge apply /root/playbooks/gunicorn.yml ${offline[*]} -q --jobs $1"; }
ansible() { echo "env ANSIBLE_CONFIG=$work/ansible.cfg ip netns exec $ns $tools/ansible-playbook $PWD/bench/gunicorn/ansible.yml"; }
pyinfra() { echo "ip netns exec $ns $tools/pyinfra -y $work/inventory.py $PWD/bench/gunicorn/pyinfra_deploy.py"; }

if [ -z "${ONLY:-}" ]; then
  hyperfine --runs "$runs" -N --export-json "$work/result.json" --export-markdown "$work/result.md" \
    --prepare "$work/fresh pip" -n "converge, pip, one at a time" "$(converge 1)" \
    --prepare "$work/fresh pip" -n "converge, pip, parallel" "$(converge 4)" \
    --prepare "$work/fresh uv" -n "converge, uv, one at a time" "$(converge 1)" \
    --prepare "$work/fresh uv" -n "converge, uv, parallel" "$(converge 4)" \
    --prepare "$work/fresh ansible" -n "Ansible" "$(ansible)" \
    --prepare "$work/fresh pyinfra" -n "pyinfra" "$(pyinfra)"
fi

# What a run made: the page through nginx, and the unit files as converge writes them.
check() {  # $1 label
  local page
  page=$(harness/container.sh exec "$name" curl -s http://localhost/)
  grep -q "Hello from gunicorn" <<< "$page" || { echo "$1: no page from nginx: $page" >&2; exit 1; }
  for unit in gunicorn.socket gunicorn.service; do
    harness/container.sh exec "$name" cat "/etc/systemd/system/$unit" > "$work/$1.$unit"
    if [ -f "$work/converge.$unit" ]; then
      cmp -s "$work/converge.$unit" "$work/$1.$unit" || { echo "$1: $unit differs from converge's" >&2; exit 1; }
    else cp "$work/$1.$unit" "$work/converge.$unit"; fi
  done
}
steps() {  # $1 label, $2 the JSON records
  python3 - "$2" "$1" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
steps = {r["id"]: r["duration_ms"] for r in records if r["type"] == "applied"}
apt = next(ms for id, ms in steps.items() if id.startswith("apt:"))
venv = next(ms for id, ms in steps.items() if id.startswith("virtualenv:"))
others = max(ms for id, ms in steps.items() if not id.startswith("apt:"))
end = max(r["started_ms"] + r["duration_ms"] for r in records if r["type"] == "applied")
print(f"{sys.argv[2]:6}  apt {apt} ms, venv {venv} ms, apt + slowest other {apt + others} ms, resources done at {end} ms")
PY
}
if [ "${ONLY:-converge}" = converge ] || [ -z "${ONLY:-}" ]; then
  for v in "pip 1" "pip 4" "uv 1" "uv 4"; do
    set -- $v
    "$work/fresh" "$1"
    harness/container.sh exec "$name" converge apply /root/playbooks/gunicorn.yml "${offline[@]}" --jobs "$2" \
      --output json > "$work/steps.json"
    check converge
    harness/container.sh exec "$name" converge plan /root/playbooks/gunicorn.yml "${offline[@]}" -q > /dev/null \
      || { echo "$v: the second plan is not empty" >&2; exit 1; }
    steps "$v" "$work/steps.json"
  done
fi
if [ -z "${ONLY:-}" ] || [ "$ONLY" = ansible ]; then
  "$work/fresh" ansible
  eval "$(ansible)" > "$work/ansible.out" || { cat "$work/ansible.out"; exit 1; }
  check ansible
  eval "$(ansible)" > "$work/ansible.out" || { cat "$work/ansible.out"; exit 1; }
  grep -q 'changed=0 ' "$work/ansible.out" || { cat "$work/ansible.out"; echo "Ansible: the second run changed something" >&2; exit 1; }
  echo "Ansible: same page and unit files, second run changed=0"
fi
if [ -z "${ONLY:-}" ] || [ "$ONLY" = pyinfra ]; then
  "$work/fresh" pyinfra
  eval "$(pyinfra)" > "$work/pyinfra.out" 2>&1 || { cat "$work/pyinfra.out"; exit 1; }
  check pyinfra
  eval "$(pyinfra)" > "$work/pyinfra.out" 2>&1 || { cat "$work/pyinfra.out"; exit 1; }
  grep -q 'No changes' "$work/pyinfra.out" || { cat "$work/pyinfra.out"; echo "pyinfra: the second run changed something" >&2; exit 1; }
  echo "pyinfra: same page and unit files, second run: no changes"
fi
if [ -f "$work/result.md" ]; then
  echo
  cat "$work/result.md"
  echo
  echo "($(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg))"
fi
