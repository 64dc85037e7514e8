#!/usr/bin/env bash
# The whole test suite: Julia's own tests (Test stdlib), then pytest.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
julia --project=. --startup-file=no julia/test/runtests.jl
# Julia's GC uses SIGSEGV internally; pytest's faulthandler would report it.
# One pytest worker per usable core, up to 4 (RAMBLE_TEST_WORKERS overrides; 0 runs in this process).
# Each test file stays on one worker (--dist loadfile), so a module's fixtures are built once.
workers=${RAMBLE_TEST_WORKERS:-$(( $(nproc) < 4 ? $(nproc) : 4 ))}
.venv/bin/python -m pytest -p no:faulthandler -n "$workers" --dist loadfile --durations=25 tests "$@"
