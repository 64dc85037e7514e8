#!/usr/bin/env bash
# The whole test suite: Julia's own tests (Test stdlib), then pytest.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
julia --project=. --startup-file=no julia/test/runtests.jl
# Julia's GC uses SIGSEGV internally; pytest's faulthandler would report it.
.venv/bin/python -m pytest -p no:faulthandler tests "$@"
