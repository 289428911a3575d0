#!/usr/bin/env bash
# Fleet benchmark (hyperfine): the site of bench/fleet/ (playbooks/gunicorn.yml without packages:
# a user, the app, gunicorn's socket and service units, the nginx site's files) on N systemd
# containers of the harness, each with its own sshd, for N = 1, 10 and 25 (or the sizes given),
# with converge, Ansible and pyinfra, each at its documented best settings for speed:
#   converge   defaults (--forks: all hosts up to 50; connections kept 60 s, --ssh-persist)
#   Ansible    pipelining, ControlMaster/ControlPersist=60s, forks = N, gather_facts: false
#   pyinfra    --parallel N
# For each tool and N: the first apply (hyperfine --prepare undoes the site on every host, outside
# the timing) and a no-op apply (the site in place). converge also without kept connections
# (--ssh-persist 0: one ssh handshake per host per run), and the controller's CPU per host (user +
# system of the whole run, from hyperfine, over N). Prints one table.
# The containers are reached through a network namespace made here (10.233.I.2 exist only inside
# it), never any other address. Ansible and pyinfra come from bench/tools.sh (a cached throw-away
# virtualenv). Before timing, each tool's result on the first host is compared with converge's
# (owners, modes, contents, the unit's state): the script stops if they differ.
# Many containers need more inotify instances and kernel keys than a default kernel allows: the
# script raises fs.inotify.max_user_instances and kernel.keys.maxkeys (never lowers them).
# Run as root from the repo root:
#   bench/fleet.sh [N...]          default: 1 10 25; 50 needs about 6 GiB of free memory
#   RUNS=5 bench/fleet.sh          hyperfine runs per measurement (default 3)
#   CONVERGE_BIN=PATH bench/fleet.sh   that converge instead of building target/release
# Needs hyperfine and what harness/install-deps.sh installs. Powers the containers off at the end,
# also when interrupted, and deletes its namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ]; then sizes=("$@"); else sizes=(1 10 25); fi
runs=${RUNS:-3}
if [ -n "${CONVERGE_BIN:-}" ]; then bin=$CONVERGE_BIN
else cargo build --release --quiet; bin=${CARGO_TARGET_DIR:-$PWD/target}/release/converge; fi
harness/rootfs.sh > /dev/null
tools=$(bench/tools.sh 2> /dev/null | tail -1)
key=${CONVERGE_CACHE:-/var/cache/converge-e2e}/ssh/id_ed25519
max=$(printf '%s\n' "${sizes[@]}" | sort -n | tail -1)

raise() { [ "$(sysctl -n "$1")" -ge "$2" ] || sysctl -q -w "$1=$2"; }
raise fs.inotify.max_user_instances 8192
raise kernel.keys.maxkeys 20000
raise kernel.keys.maxbytes 2000000

work=$(mktemp -d /tmp/converge-bench-fleet.XXXXXX)
ns=cvfleet-$$
names=()
cleanup() {
  "$bin" disconnect > /dev/null 2>&1 || true
  ip netns del "$ns" 2> /dev/null || true
  for name in "${names[@]}"; do harness/container.sh poweroff "$name" > /dev/null 2>&1 & done
  wait
  rm -rf "$work"
}
trap cleanup EXIT

# Boot the containers, a few at a time, and wire each into the namespace.
ip netns add "$ns"
for (( i = 0; i < max; i++ )); do names+=("bench-fleet-$$-$i"); done
boot() {
  local i=$1 leader
  leader=$(harness/container.sh boot "${names[$i]}" 2> /dev/null | tail -n 1)
  ip link add "h$i" netns "$ns" type veth peer name cv0 netns "$leader"
  ip -n "$ns" addr add "10.233.$i.1/24" dev "h$i"
  ip -n "$ns" link set "h$i" up
  nsenter -t "$leader" -n ip addr add "10.233.$i.2/24" dev cv0
  nsenter -t "$leader" -n ip link set cv0 up
}
for (( i = 0; i < max; i++ )); do
  boot "$i" &
  (( (i + 1) % 4 )) || wait
done
wait
echo "booted $max containers; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

cat > "$work/ssh_config" << EOF
Host *
  User root
  IdentityFile $key
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
EOF
cat > "$work/ansible.cfg" << EOF
[defaults]
host_key_checking = False
interpreter_python = /usr/bin/python3
[ssh_connection]
pipelining = True
ssh_args = -F $work/ssh_config -o ControlMaster=auto -o ControlPersist=60s
control_path_dir = $work/cp
EOF
for n in "${sizes[@]}"; do
  : > "$work/hosts-$n.ini"
  echo "hosts = [" > "$work/inventory-$n.py"
  args=()
  for (( i = 0; i < n; i++ )); do
    echo "10.233.$i.2 ansible_user=root ansible_ssh_private_key_file=$key" >> "$work/hosts-$n.ini"
    echo "  (\"10.233.$i.2\", {\"ssh_user\": \"root\", \"ssh_key\": \"$key\", \"ssh_strict_host_key_checking\": \"off\", \"ssh_known_hosts_file\": \"/dev/null\"})," >> "$work/inventory-$n.py"
    args+=(--host "10.233.$i.2")
  done
  echo "]" >> "$work/inventory-$n.py"
  echo "${args[*]}" > "$work/hosts-$n"
done

net="ip netns exec $ns"
converge() { echo "$net $bin apply $PWD/bench/fleet/site.yml --ssh-config $work/ssh_config -q $(cat "$work/hosts-$1") ${2:-}"; }
ansible() { echo "env ANSIBLE_CONFIG=$work/ansible.cfg $net $tools/ansible-playbook -i $work/hosts-$1.ini -f $1 $PWD/bench/fleet/ansible.yml"; }
pyinfra() { echo "$net $tools/pyinfra -y --parallel $1 $work/inventory-$1.py $PWD/bench/fleet/pyinfra_deploy.py"; }

# undo N: the site is gone from the first N hosts (and converge's run records with it).
cat > "$work/undo" << EOF
#!/usr/bin/env bash
for (( i = 0; i < \$1; i++ )); do
  nsenter -t "\$(harness/container.sh leader "bench-fleet-$$-\$i")" -a sh -c '
    systemctl disable --now gunicorn.socket gunicorn.service >/dev/null 2>&1
    rm -rf /srv/mysite /etc/nginx /etc/systemd/system/gunicorn.* /var/lib/converge /run/gunicorn
    userdel -r app >/dev/null 2>&1; systemctl daemon-reload' &
done
wait
EOF
chmod +x "$work/undo"

# What a tool left on host 0: owners, modes, contents, links, the socket's state.
tree() {
  nsenter -t "$(harness/container.sh leader "${names[0]}")" -a sh -c '
    find /srv/mysite /etc/nginx /etc/systemd/system/gunicorn.socket /etc/systemd/system/gunicorn.service \
      -printf "%p %y %m %u %g %l\n" | sort
    find /srv/mysite /etc/nginx /etc/systemd/system/gunicorn.* -type f -exec sha256sum {} + | sort
    id app | sed "s/uid=[0-9]*//; s/gid=[0-9]*//"
    systemctl is-enabled gunicorn.socket; systemctl is-active gunicorn.socket'
}
# converge sends itself to each host once per binary: done here, untimed (a first apply below
# is of a host that has this converge, as every run after the first is).
eval "$(converge "$max" "--forks 8")" > /dev/null
"$work/undo" 1
eval "$(converge 1)" > /dev/null
tree > "$work/tree-converge"
for tool in ansible pyinfra; do
  "$work/undo" 1
  eval "$($tool 1)" > "$work/$tool.out" 2>&1 || { cat "$work/$tool.out"; exit 1; }
  tree > "$work/tree-$tool"
  diff -u "$work/tree-converge" "$work/tree-$tool" || { echo "$tool's result differs from converge's" >&2; exit 1; }
done
echo "equivalent: Ansible's and pyinfra's trees on the first host are converge's" >&2

# One measurement: hyperfine's mean and user+system time, as "MEAN CPU" in seconds.
measure() {
  local label=$1 command=$2 prepare=${3:-}
  local opts=(--runs "$runs" -N --export-json "$work/m.json" --style none)
  if [ -n "$prepare" ]; then opts+=(--prepare "$prepare"); else opts+=(--warmup 1); fi
  hyperfine "${opts[@]}" -n "$label" "$command" > /dev/null 2>&1 ||
    { echo "failed: $command" >&2; eval "$command" >&2; exit 1; }
  python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print("%.2f %.2f" % (r["mean"], r["user"] + r["system"]))' "$work/m.json"
}

printf '%-34s %4s %9s %9s %14s\n' tool N first no-op "CPU/host no-op" > "$work/table"
row() {  # tool label, N, first command, no-op command
  local first noop
  "$bin" disconnect > /dev/null 2>&1 || true
  first=$(measure "$1 first $2" "$3" "$work/undo $2")
  noop=$(measure "$1 no-op $2" "$4")
  read -r f _ <<< "$first"; read -r m cpu <<< "$noop"
  printf '%-34s %4s %8ss %8ss %12sms\n' "$1" "$2" "$f" "$m" "$(python3 -c "print(round($cpu * 1000 / $2))")" | tee -a "$work/table" >&2
}
for n in "${sizes[@]}"; do
  row converge "$n" "$(converge "$n")" "$(converge "$n")"
  row "converge --ssh-persist 0" "$n" "$(converge "$n" "--ssh-persist 0")" "$(converge "$n" "--ssh-persist 0")"
  row "Ansible (pipelining, forks=N)" "$n" "$(ansible "$n")" "$(ansible "$n")"
  row "pyinfra (--parallel N)" "$n" "$(pyinfra "$n")" "$(pyinfra "$n")"
done

# Where a converge no-op's time goes on one host: the ssh handshake (a bare `ssh HOST true` over a
# new connection), the engine alone (converge run inside the container on the same site), and the
# whole remote run over a new and over a kept connection.
leader=$(harness/container.sh leader "${names[0]}")
harness/container.sh copy-in "${names[0]}" "$bin" /usr/local/bin/converge
harness/container.sh copy-in "${names[0]}" bench/fleet /root/b/bench/fleet
harness/container.sh copy-in "${names[0]}" playbooks /root/b/playbooks
eval "$(converge 1)" > /dev/null
hyperfine -N --warmup 2 --runs 10 --style basic \
  -n "ssh HOST true, new connection" "$net ssh -F $work/ssh_config -o ControlPath=none 10.233.0.2 true" \
  -n "the engine alone, on the host" "nsenter -t $leader -a /usr/local/bin/converge apply /root/b/bench/fleet/site.yml -q" \
  -n "converge no-op, 1 host, new connection" "$(converge 1 "--ssh-persist 0")" \
  -n "converge no-op, 1 host, kept connection" "$(converge 1)" >&2

echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$work/table"
