#!/usr/bin/env bash
# Remote no-op benchmark (hyperfine): `converge apply` of a converged playbook over SSH against 1
# and against 5 targets, each a systemd container of the harness with its own sshd, reached
# through a network namespace made here (10.231.N.2, addresses that exist only inside it). For
# scale: one bare `ssh HOST true`. Run as root from the repo root:
#   bench/remote.sh
# Needs hyperfine, and what harness/install-deps.sh installs. Boots 5 containers and powers them
# off at the end, also when interrupted; deletes its namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/converge
harness/rootfs.sh > /dev/null
key=${CONVERGE_CACHE:-/var/cache/converge-e2e}/ssh/id_ed25519
work=$(mktemp -d /tmp/converge-bench-remote.XXXXXX)
ns=cvbench-$$
names=()
cleanup() {
  ip netns del "$ns" 2> /dev/null || true
  for name in "${names[@]}"; do harness/container.sh poweroff "$name" > /dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$ns"
hosts=()
for i in 0 1 2 3 4; do
  name=bench-remote-$$-$i
  names+=("$name")
  leader=$(harness/container.sh boot "$name" 2> /dev/null | tail -n 1)
  ip link add "h$i" netns "$ns" type veth peer name cv0 netns "$leader"
  ip -n "$ns" addr add "10.231.$i.1/24" dev "h$i"
  ip -n "$ns" link set "h$i" up
  nsenter -t "$leader" -n ip addr add "10.231.$i.2/24" dev cv0
  nsenter -t "$leader" -n ip link set cv0 up
  hosts+=(--host "10.231.$i.2")
done

cat > "$work/ssh_config" << EOF
Host *
  User root
  IdentityFile $key
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
EOF

# A small site: a directory, ten files (five from a template), a symlink.
mkdir -p "$work/site/templates"
printf '# {{ site }}: {{ n }}\nworkers = {{ workers }}\n' > "$work/site/templates/app.conf.j2"
{
  echo "vars: {site: bench, workers: 3}"
  echo "resources:"
  echo "  - directory: /srv/bench"
  for n in 0 1 2 3 4; do
    echo "  - file: /srv/bench/static-$n.conf"
    echo "    content: \"static file $n\\n\""
    echo "  - file: /srv/bench/app-$n.conf"
    echo "    template: templates/app.conf.j2"
    echo "    mode: \"0640\""
  done
  echo "  - symlink: /srv/bench/current"
  echo "    target: /srv/bench/app-0.conf"
} > "$work/site/site.yml"
sed -i 's/{{ n }}/file/' "$work/site/templates/app.conf.j2"

net="nsenter --net=/run/netns/$ns"
run="$net $bin apply $work/site/site.yml --ssh-config $work/ssh_config -q"
# Converge every target once (this uploads converge), then check that a run is a no-op.
$run "${hosts[@]}" > /dev/null
$net "$bin" plan "$work/site/site.yml" --ssh-config "$work/ssh_config" -q "${hosts[@]}" > /dev/null

hyperfine --warmup 2 --min-runs 15 -N \
  -n "ssh 10.231.0.2 true (one connection, for scale)" \
  "$net ssh -F $work/ssh_config -o BatchMode=yes 10.231.0.2 true" \
  -n "converge apply, no-op, 1 target" "$run --host 10.231.0.2" \
  -n "converge apply, no-op, 5 targets" "$run ${hosts[*]}"

# The same runs with a classical key exchange: the default (sntrup761x25519, post-quantum) costs
# the ssh client about 50 ms of CPU per connection, which is most of the difference above on a
# machine that runs the client and five servers on two cores. (Which KEX to use is the ssh
# config's choice, never converge's.)
sed "s/^Host \*$/&\n  KexAlgorithms curve25519-sha256/" "$work/ssh_config" > "$work/ssh_config_c25519"
run="$net $bin apply $work/site/site.yml --ssh-config $work/ssh_config_c25519 -q"
hyperfine --warmup 2 --min-runs 15 -N \
  -n "converge apply, no-op, 1 target, curve25519" "$run --host 10.231.0.2" \
  -n "converge apply, no-op, 5 targets, curve25519" "$run ${hosts[*]}"
