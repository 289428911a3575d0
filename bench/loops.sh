#!/usr/bin/env bash
# for_each and on_change benchmark (hyperfine): a no-op apply of 1000 files made by one entry with
# `for_each:`, against the same 1000 files written out one entry each, and with a `command` that
# has `on_change:` on all of them (which, nothing having changed, runs nothing, not even a guard).
# Run from the repo root:
#   bench/loops.sh                                   # a release build
#   CONVERGE_BIN=target/debug/converge bench/loops.sh  # a build of your own, not rebuilt
# Needs hyperfine (apt-get install hyperfine). Writes only under a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -n ${CONVERGE_BIN:-} ]] || cargo build --release --quiet
bin=$(realpath "${CONVERGE_BIN:-target/release/converge}")
work=$(mktemp -d /tmp/converge-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
n=1000

{
  echo "resources:"
  echo "  - directory: /srv/bench"
  for ((f = 0; f < n; f++)); do
    echo "  - file: /srv/bench/f$f.conf"
    echo "    content: \"value of file $f\\n\""
  done
} > "$work/entries.yml"
{
  echo "resources:"
  echo "  - directory: /srv/bench"
  echo "  - file: \"/srv/bench/f{{ item }}.conf\""
  echo "    for_each: \"{{ range($n) | list }}\""
  echo "    content: \"value of file {{ item }}\\n\""
} > "$work/for_each.yml"
{
  cat "$work/for_each.yml"
  echo "  - command: [sh, -c, 'echo reloaded >> /tmp/never']"
  echo "    on_change: [$(for ((f = 0; f < n; f++)); do printf 'file:/srv/bench/f%s.conf, ' "$f"; done)directory:/srv/bench]"
} > "$work/on_change.yml"

for pb in entries for_each on_change; do
  "$bin" apply "$work/$pb.yml" --root "$work/root" -q > /dev/null
  "$bin" plan "$work/$pb.yml" --root "$work/root" > /dev/null # exits 0 only when converged
done
hyperfine --warmup 3 --min-runs 20 -N \
  -n "$n files, one entry each (no-op)" "$bin apply $work/entries.yml --root $work/root -q" \
  -n "$n files, one for_each entry (no-op)" "$bin apply $work/for_each.yml --root $work/root -q" \
  -n "the same and an on_change command (no-op)" "$bin apply $work/on_change.yml --root $work/root -q"
