#!/usr/bin/env bash
# A wheel that works on its own: build it, install it into a fresh virtual
# environment, and run the Julia backend from outside the checkout.
#
# The fresh venv sees the main venv's packages (torch, numpy, h5py, ...)
# (pip included) through a .pth line, so nothing is downloaded again; ramble itself comes
# only from the wheel (checked: its module path is inside the fresh venv).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
py="$repo/.venv/bin/python"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$py" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w "$work/dist" "$repo"
wheel=$(ls "$work"/dist/ramble-*.whl)
# zipfile, not `unzip -l | grep -q`: unzip may be missing, and under pipefail grep -q's early exit
# can kill unzip with SIGPIPE and fail the check on a good wheel (CI failed that way once).
"$py" - "$wheel" <<'PY' || { echo "wheel-check: $wheel holds no ramble/julia_src/Ramble.jl" >&2; exit 1; }
import sys, zipfile
sys.exit(0 if "ramble/julia_src/Ramble.jl" in zipfile.ZipFile(sys.argv[1]).namelist() else 1)
PY

"$py" -m venv --without-pip "$work/venv"  # its own pip and an old setuptools would shadow the shared ones
shared=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
own=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$shared" > "$own/_main_venv_packages.pth"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check --no-index "$wheel"

cd "$work"  # outside the checkout: nothing of it is importable from here
where=$("$work/venv/bin/python" -c 'import ramble, ramble.julia.bridge as b; print(ramble.__file__); print(b.julia_source())')
case "$where" in
    *"$repo"*) echo "wheel-check: ramble was imported from the checkout: $where" >&2; exit 1 ;;
esac
"$work/venv/bin/ramble" --quiet tcm run --backend julia -N 30 -K 3 -M 40 --solutions 2 --out "$work/t.h5"
"$work/venv/bin/ramble" --quiet verify "$work/t.h5" | tail -1
echo "wheel-check: ok ($wheel installed into a fresh venv; Julia backend ran from $work)"
