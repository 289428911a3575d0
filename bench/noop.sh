#!/usr/bin/env bash
# No-op apply benchmark (hyperfine): a converged playbook of N files, against reading and hashing
# the same files with `find -exec sha256sum`, and the example playbook. Run from the repo root:
#   bench/noop.sh            # 20 and 1000 files, and playbooks/mysite.yml
#   BASELINE=/path/to/an/older/converge bench/noop.sh   # the same runs of another build, side by side
#   CONVERGE_BIN=target/debug/converge bench/noop.sh     # a build of your own, not rebuilt
# Needs hyperfine (apt-get install hyperfine). Writes only under a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -n ${CONVERGE_BIN:-} ]] || cargo build --release --quiet
bin=$(realpath "${CONVERGE_BIN:-target/release/converge}")
work=$(mktemp -d /tmp/converge-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

source bench/workload.sh
playbook() { # N -> a playbook of N files (bench/workload.sh)
  workload_playbook "$1" "$work/files-$1.yml"
  echo "$work/files-$1.yml"
}

for n in 20 1000; do
  noop_compare "$n files" "$(playbook $n)" "$work/root-$n" "$work/root-$n/srv"
done

root=$work/root-mysite
"$bin" apply playbooks/mysite.yml --root "$root" -q > /dev/null
baseline=()
[[ -n ${BASELINE:-} ]] && baseline=(-n "baseline apply playbooks/mysite.yml (no-op)" "$BASELINE apply playbooks/mysite.yml --root $root -q")
hyperfine --warmup 3 --min-runs 20 -N -n "converge apply playbooks/mysite.yml (no-op)" \
  "$bin apply playbooks/mysite.yml --root $root -q" "${baseline[@]}"
