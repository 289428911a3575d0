#!/usr/bin/env bash
# Run-recording benchmark (hyperfine) on bench/noop.sh's 1000-file workload (bench/workload.sh):
#   - an apply that changes 10 of the 1000 files, which records the run (the 10 previous contents
#     stored by sha256 and fsynced, run.json written, old runs pruned): first with an empty state
#     directory (10 new contents to store), then with those contents stored already by earlier
#     runs (stored once by sha256); against copying those 10 files with and without fsync, what
#     the recording must at least do. Between two timed runs, an untimed apply puts the 10 files
#     back (--prepare). `strace -c -e trace=fsync` of one such apply counts its fsyncs: 20 for
#     the 10 files it writes (file and directory), 20 for the 10 contents it stores, 2 for run.json.
#   - a no-op apply, which must record nothing: the script fails if it added a run.
# Run from the repo root:
#   bench/runs.sh
#   BASELINE=/path/to/an/older/converge bench/runs.sh   # its changing apply too, side by side
# Needs hyperfine (apt-get install hyperfine). Writes only under a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/converge
work=$(mktemp -d /tmp/converge-bench-runs.XXXXXX)
trap 'rm -rf "$work"' EXIT
source bench/workload.sh

a=$work/a.yml b=$work/b.yml root=$work/root
workload_playbook 1000 "$a"
workload_playbook 1000 "$b" 10
"$bin" apply "$a" --root "$root" -q > /dev/null
runs() { find "$root/var/lib/converge/runs" -mindepth 1 -maxdepth 1 | wc -l; }

# The 10 files the changing apply records, copied as they are.
changed=()
for ((f = 0; f < 10; f++)); do changed+=("$root/srv/bench/d0/f$f.conf"); done
copy=$work/copy
put_back="$bin apply $a --root $root -q"
# Without the state directory: the run stores the 10 previous contents anew (its first run).
fresh="sh -c '$put_back && rm -rf $root/var/lib/converge'"
baseline=()
[[ -n ${BASELINE:-} ]] && baseline=(--prepare "$put_back" -n "baseline apply changing 10 of 1000 files"
  "$BASELINE apply $b --root $root -q")
hyperfine --warmup 2 --min-runs 20 -N \
  --prepare "$fresh" -n "converge apply changing 10 of 1000 files (recorded, 10 new contents stored)" \
  "$bin apply $b --root $root -q" \
  --prepare "$put_back" -n "converge apply changing 10 of 1000 files (recorded, contents stored already)" \
  "$bin apply $b --root $root -q" \
  "${baseline[@]}" \
  --prepare "rm -rf $copy" -n "cp of those 10 files" "sh -c 'mkdir $copy && cp ${changed[*]} $copy/'" \
  --prepare "rm -rf $copy" -n "cp + fsync of those 10 files" "sh -c 'mkdir $copy && cp ${changed[*]} $copy/ && sync $copy/*'"

echo
echo "One recorded run of 10 changed files:"
last=$(find "$root/var/lib/converge/runs" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -1)
du -b "$root/var/lib/converge/runs/$last/run.json"
echo "stored objects: $(find "$root/var/lib/converge/objects" -type f | wc -l) (retention: the last 10 runs)"

"$bin" apply "$a" --root "$root" -q > /dev/null
before=$(runs)
hyperfine --warmup 3 --min-runs 20 -N -n "converge apply, 1000 files (no-op)" "$bin apply $a --root $root -q"
after=$(runs)
[[ $before == "$after" ]] || { echo "a no-op apply recorded a run ($before -> $after runs)" >&2; exit 1; }
echo "no-op applies recorded nothing ($after runs before and after)"
