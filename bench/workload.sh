# The file workload of the benchmarks (sourced): a playbook of N files, 10 per directory, of
# about 1 KiB each. `workload_playbook N OUT [CHANGED]` writes it to OUT; with CHANGED, the first
# CHANGED files have other content (a run that changes exactly those).
workload_playbook() {
  local n=$1 out=$2 changed=${3:-0}
  {
    echo "name: $n files"
    echo "resources:"
    for ((d = 0; d < (n + 9) / 10; d++)); do
      echo "  - directory: /srv/bench/d$d"
      for ((f = d * 10; f < d * 10 + 10 && f < n; f++)); do
        local value="value of file $f"
        ((f < changed)) && value="changed value of file $f"
        echo "  - file: /srv/bench/d$d/f$f.conf"
        echo "    mode: \"0644\""
        echo "    content: |"
        for ((l = 0; l < 16; l++)); do echo "      key_$l = $value, line $l, padded to about sixty bytes"; done
      done
    done
  } > "$out"
}

# `noop_compare LABEL PLAYBOOK ROOT TREE`: converges PLAYBOOK into ROOT with $bin, checks that a
# plan then finds nothing, and times a no-op apply ($bin, and $BASELINE when set) against reading
# and hashing the files under TREE with `find -exec sha256sum`.
noop_compare() {
  local label=$1 pb=$2 root=$3 tree=$4
  "$bin" apply "$pb" --root "$root" -q > /dev/null
  "$bin" plan "$pb" --root "$root" > /dev/null   # exits 0 only when converged
  local baseline=()
  [[ -n ${BASELINE:-} ]] && baseline=(-n "baseline apply, $label (no-op)" "$BASELINE apply $pb --root $root -q")
  hyperfine --warmup 3 --min-runs 20 -N \
    -n "converge apply, $label (no-op)" "$bin apply $pb --root $root -q" "${baseline[@]}" \
    -n "find -exec sha256sum, $label" "find $tree -type f -exec sha256sum {} +"
}
