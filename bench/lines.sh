#!/usr/bin/env bash
# No-op apply benchmark of `line_in_file` (hyperfine): N config files of 120 lines each (CRLF-free
# copies of a sshd_config-like file), 5 `line_in_file` entries on each (one resource per file),
# converged; against reading and hashing the same files. Run from the repo root:
#   bench/lines.sh           # 20 and 200 files
#   BASELINE=/path/to/an/older/converge bench/lines.sh   # the same runs of another build
#   CONVERGE_BIN=target/debug/converge bench/lines.sh     # a build of your own, not rebuilt
# Needs hyperfine (apt-get install hyperfine). Writes only under a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -n ${CONVERGE_BIN:-} ]] || cargo build --release --quiet
bin=$(realpath "${CONVERGE_BIN:-target/release/converge}")
work=$(mktemp -d /tmp/converge-bench-lines.XXXXXX)
trap 'rm -rf "$work"' EXIT

config() { # a 120-line file of commented settings, as a package ships it
  for ((l = 0; l < 120; l++)); do
    case $((l % 4)) in
      0) echo "# Setting$l does something; change it to yes here" ;;
      1) echo "#Setting$l no" ;;
      2) echo "" ;;
      3) echo "Other$l value $l" ;;
    esac
  done
}

setup() { # N -> a root with N config files, and a playbook of 5 entries on each
  local n=$1 root=$work/root-$1 out=$work/lines-$1.yml
  mkdir -p "$root/etc/app"
  echo "name: $n files, 5 lines each" > "$out"
  echo "resources:" >> "$out"
  for ((f = 0; f < n; f++)); do
    config > "$root/etc/app/f$f.conf"
    for s in 1 5 9 13 17; do
      printf '  - line_in_file: /etc/app/f%d.conf\n    line: Setting%d yes\n    match: '\''^#?Setting%d\\s'\''\n' "$f" "$s" "$s" >> "$out"
    done
  done
  echo "$out"
}

source bench/workload.sh
for n in 20 200; do
  noop_compare "$n files x 5 lines" "$(setup $n)" "$work/root-$n" "$work/root-$n/etc/app"
done
