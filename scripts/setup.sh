#!/usr/bin/env bash
# Set up ramble on a fresh Debian 12 machine: system Julia, a virtual
# environment in .venv, PyTorch + torchvision, and ramble itself (editable;
# python/ramble/julia_src links to the Julia sources in julia/src) with its
# test tools (pytest, scikit-learn for the digits example, ruff).
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/install-julia.sh

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$PY" -m venv .venv
fi
# torch 2.14.1 + torchvision 0.29.1 is a pair that imports together (PyPI's
# torchvision beside another torch fails with "operator torchvision::nms does
# not exist"); on a machine with a CUDA GPU this is the CUDA build.
.venv/bin/pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/pip install -q --disable-pip-version-check -e ".[test,vision,cluster]"
.venv/bin/ramble --version
