#!/usr/bin/env bash
# No-op apply benchmark (hyperfine): a converged playbook of N files, against reading and hashing
# the same files with `find -exec sha256sum`, and the example playbook. Run from the repo root:
#   bench/noop.sh            # 20 and 1000 files, and playbooks/mysite.yml
#   BASELINE=/path/to/an/older/converge bench/noop.sh   # the same runs of another build, side by side
# Needs hyperfine (apt-get install hyperfine). Writes only under a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/converge
work=$(mktemp -d /tmp/converge-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

source bench/workload.sh
playbook() { # N -> a playbook of N files (bench/workload.sh)
  workload_playbook "$1" "$work/files-$1.yml"
  echo "$work/files-$1.yml"
}

for n in 20 1000; do
  pb=$(playbook $n)
  root=$work/root-$n
  "$bin" apply "$pb" --root "$root" -q > /dev/null
  "$bin" plan "$pb" --root "$root" > /dev/null   # exits 0 only when converged
  baseline=()
  [[ -n ${BASELINE:-} ]] && baseline=(-n "baseline apply, $n files (no-op)" "$BASELINE apply $pb --root $root -q")
  hyperfine --warmup 3 --min-runs 20 -N \
    -n "converge apply, $n files (no-op)" "$bin apply $pb --root $root -q" "${baseline[@]}" \
    -n "find -exec sha256sum, $n files" "find $root/srv -type f -exec sha256sum {} +"
done

root=$work/root-mysite
"$bin" apply playbooks/mysite.yml --root "$root" -q > /dev/null
baseline=()
[[ -n ${BASELINE:-} ]] && baseline=(-n "baseline apply playbooks/mysite.yml (no-op)" "$BASELINE apply playbooks/mysite.yml --root $root -q")
hyperfine --warmup 3 --min-runs 20 -N -n "converge apply playbooks/mysite.yml (no-op)" \
  "$bin apply playbooks/mysite.yml --root $root -q" "${baseline[@]}"
