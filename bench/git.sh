#!/usr/bin/env bash
# No-op benchmark of the git kind (hyperfine): a converged checkout of a local bare repository
# with `version:` a commit (no process: .git/HEAD and refs read), a branch (one `git ls-remote`),
# and a commit with `force: true` (one local `git status`), against git's own `status` and
# `ls-remote` alone. Run from the repo root, as root (the live host, under a temp dir):
#   bench/git.sh
#   CONVERGE_BIN=target/debug/converge bench/git.sh     # a build of your own, not rebuilt
# Needs hyperfine and git. Writes only under a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -n ${CONVERGE_BIN:-} ]] || cargo build --release --quiet
bin=$(realpath "${CONVERGE_BIN:-target/release/converge}")
# Other runs on this host (tests) hold /run/converge.lock for a moment: wait for them.
export CONVERGE_LOCK_WAIT=${CONVERGE_LOCK_WAIT:-60}
work=$(mktemp -d /tmp/converge-bench-git.XXXXXX)
trap 'rm -rf "$work"' EXIT

# A repository of 200 files in 10 commits.
git init --quiet --bare --initial-branch=main "$work/app.git"
git clone --quiet "$work/app.git" "$work/seed" 2>/dev/null
for c in $(seq 10); do
  for f in $(seq 20); do echo "$c $f" > "$work/seed/file-$c-$f.txt"; done
  git -C "$work/seed" add --all
  git -C "$work/seed" -c user.name=bench -c user.email=bench@localhost commit --quiet -m "commit $c"
done
git -C "$work/seed" push --quiet origin main
commit=$(git -C "$work/seed" rev-parse HEAD)

playbook() { # NAME VERSION [MORE] -> a playbook of the checkout
  printf 'resources:\n  - git: %s/app\n    repo: %s/app.git\n    version: "%s"\n%s' \
    "$work" "$work" "$2" "${3:-}" > "$work/$1.yml"
  echo "$work/$1.yml"
}
commit_pb=$(playbook commit "$commit")
branch_pb=$(playbook branch main)
force_pb=$(playbook force "$commit" "    force: true
")
"$bin" apply "$commit_pb" -q > /dev/null
for pb in "$commit_pb" "$branch_pb" "$force_pb"; do
  "$bin" apply "$pb" | grep -q '^No changes' || { echo "$pb is no no-op" >&2; exit 1; }
done

hyperfine --warmup 3 --min-runs 20 -N \
  -n "converge apply, version: a commit (no-op, no process)" "$bin apply $commit_pb -q" \
  -n "converge apply, version: main (no-op, one git ls-remote)" "$bin apply $branch_pb -q" \
  -n "converge apply, a commit with force: true (no-op, one git status)" "$bin apply $force_pb -q" \
  -n "git status --porcelain alone" "git -C $work/app status --porcelain" \
  -n "git ls-remote alone" "git ls-remote $work/app.git refs/heads/main"
