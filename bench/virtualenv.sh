#!/usr/bin/env bash
# No-op check of a virtualenv with 30 packages (hyperfine): `converge apply` on the converged venv,
# which reads pyvenv.cfg and the METADATA files and runs no process, against `pip freeze` in the
# same venv, and the floor of any check that starts Python (`python -c pass`); prints the ratio.
# Offline: the 30 wheels are written here. Run from the repo root:
#   bench/virtualenv.sh
# Needs hyperfine (apt-get install hyperfine) and python3 with its venv module. Writes only under
# a temp dir; as root it runs `apply` (which takes /run/converge.lock), otherwise `plan`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/converge
work=$(mktemp -d /tmp/converge-bench-venv.XXXXXX)
trap 'rm -rf "$work"' EXIT
n=30

# Wheels by hand: a zip of the package and NAME-VERSION.dist-info/{METADATA,WHEEL,RECORD}.
mkdir "$work/wheels"
python3 - "$work/wheels" "$n" <<'PY'
import base64, hashlib, sys, zipfile
out, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    name, version = f"bench-pkg-{i:02}", "1.0"
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": f"N = {i}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: converge-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    digest = lambda t: base64.urlsafe_b64encode(hashlib.sha256(t.encode()).digest()).rstrip(b"=").decode()
    record = [f"{p},sha256={digest(t)},{len(t.encode())}" for p, t in files.items()]
    files[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(f"{out}/{dist}-{version}-py3-none-any.whl", "w") as z:
        for p, t in files.items():
            z.writestr(p, t)
PY

venv=$work/venv
pb=$work/venv.yml
{
  echo "resources:"
  echo "  - virtualenv: $venv"
  echo "    no_index: true"
  echo "    find_links: [$work/wheels]"
  echo "    packages:"
  for ((i = 0; i < n; i++)); do printf '      - "bench-pkg-%02d==1.0"\n' "$i"; done
} > "$pb"

if [ "$(id -u)" = 0 ]; then check=apply; else check=plan; fi
"$bin" apply "$pb" -q > /dev/null 2>&1 || "$bin" apply "$pb"
"$bin" plan "$pb" > /dev/null   # exits 0 only when converged
[ "$("$venv/bin/python" -m pip freeze | wc -l)" = "$n" ]

hyperfine --warmup 3 --min-runs 30 -N --export-json "$work/result.json" \
  -n "converge $check, venv of $n packages (no-op)" "$bin $check $pb -q" \
  -n "pip freeze, same venv" "$venv/bin/python -m pip freeze" \
  -n "python -c pass, same venv" "$venv/bin/python -c pass"

python3 - "$work/result.json" <<'PY'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
(converge, c), (freeze, f), (floor, p) = list(r.items())
print(f"\n{converge}: {c * 1000:.2f} ms; pip freeze: {f * 1000:.1f} ms; python -c pass: {p * 1000:.1f} ms")
print(f"pip freeze / converge: {f / c:.0f}x   (python -c pass / converge: {p / c:.0f}x)")
PY
