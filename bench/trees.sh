#!/usr/bin/env bash
# No-op benchmark (hyperfine) of a copied tree and an extracted download: `directory` with
# `source:` of N files, against the same N files as `file` resources with `source:`, and against
# `find -exec sha256sum` of them; then a `download` with `extract:` of an archive of the same N
# files (file:// URL). Run from the repo root:
#   bench/trees.sh           # 1000 files
#   N=5000 bench/trees.sh
# Needs hyperfine (apt-get install hyperfine). Writes only under a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/converge
n=${N:-1000}
work=$(mktemp -d /tmp/converge-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The source: N files of about 1 KiB, 10 per directory.
for ((f = 0; f < n; f++)); do
  d=$work/files/site/d$((f / 10))
  mkdir -p "$d"
  for ((l = 0; l < 16; l++)); do echo "key_$l = value of file $f, line $l, padded to about sixty bytes"; done > "$d/f$f.conf"
done
tar -C "$work/files" -czf "$work/site.tar.gz" site
sha=$(sha256sum "$work/site.tar.gz" | cut -d' ' -f1)

printf 'resources:\n  - directory: /srv/site\n    source: files/site\n    purge: true\n' > "$work/tree.yml"
{
  echo "resources:"
  for dir in "$work"/files/site/d*; do
    echo "  - directory: /srv/site/${dir##*/}"
    for file in "$dir"/*; do
      echo "  - file: /srv/site/${dir##*/}/${file##*/}"
      echo "    source: files/site/${dir##*/}/${file##*/}"
    done
  done
} > "$work/files.yml"
printf 'resources:\n  - download: /srv/site.tar.gz\n    url: file://%s\n    sha256: %s\n    extract: /srv/extracted\n' \
  "$work/site.tar.gz" "$sha" > "$work/download.yml"

for pb in tree files download; do
  "$bin" apply "$work/$pb.yml" --root "$work/root-$pb" -q > /dev/null
  "$bin" plan "$work/$pb.yml" --root "$work/root-$pb" > /dev/null   # exits 0 only when converged
done
hyperfine --warmup 3 --min-runs 20 -N \
  -n "directory source:, $n files (no-op)" "$bin apply $work/tree.yml --root $work/root-tree -q" \
  -n "$n file resources with source: (no-op)" "$bin apply $work/files.yml --root $work/root-files -q" \
  -n "download extract:, $n files (no-op)" "$bin apply $work/download.yml --root $work/root-download -q" \
  -n "find -exec sha256sum, $n files" "find $work/root-tree/srv -type f -exec sha256sum {} +"
