#!/usr/bin/env bash
# ramble on a CUDA GPU: the checks that no CPU run can make, in one script with a 10-minute budget.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, on a machine with a GPU
#
# Steps (each under `timeout`, skipped when the budget left is too small; the
# results file says which ran, which passed, and how long each took):
#   1. the device: nvidia-smi, torch's CUDA build and device name;
#   2. the CUDA tests: pytest -k cuda (on a GPU none of them may skip);
#   3. a MNIST-100 path on cuda (ramble mnist run --train-size 100 --solutions 2 --device cuda);
#   4. determinism: the same run again, then `ramble diff` of the two files (exit 0: identical);
#   5. the Hessian benchmark on cuda (benchmarks/bench_hessian.py --device cuda; PyHessian
#      only if it is installed, `pip install pyhessian==0.1`).
#
# Writes its figures to $OUT/gpu_check.txt when OUT is set (the device tool collects $OUT),
# else to benchmarks/results/gpu_check-<UTC date>.txt, plus the JSON of the Hessian
# benchmark and the logs next to it.  Needs: a Python with ramble installed ($PYTHON,
# default .venv/bin/python), MNIST where ramble finds it (RAMBLE_MNIST_DIR or shared/mnist).
# Exit status: 0 when every step that ran passed, 1 otherwise.
# Dry run of the plumbing on a CPU machine: DEVICE=cpu bash benchmarks/gpu_check.sh (checks nothing about CUDA).
set -u
cd "$(dirname "$0")/.."

BUDGET_S=${BUDGET_S:-600}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-.venv/bin/python}
RAMBLE=("$PY" -m ramble.cli)
export PYTHONPATH="python${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${RAMBLE_MNIST_DIR:-}" ] && [ -d shared/mnist ]; then export RAMBLE_MNIST_DIR=shared/mnist; fi
if [ -n "${OUT:-}" ]; then DEST=$OUT; else DEST=benchmarks/results/gpu_check-$(date -u +%Y%m%dT%H%M%SZ); fi
mkdir -p "$DEST"
RESULTS=$DEST/gpu_check.txt
START=$(date +%s)
FAILED=0

say() { echo "$*" | tee -a "$RESULTS"; }
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }

# step NAME NEEDED_S CMD...: runs CMD under timeout (at most the budget left), logs to $DEST/NAME.log
step() {
    local name=$1 need=$2; shift 2
    local budget; budget=$(left)
    if [ "$budget" -lt "$need" ]; then
        say "SKIPPED $name: ${budget} s left of the ${BUDGET_S} s budget, it needs about ${need} s"
        FAILED=1
        return 1
    fi
    local t0 rc secs; t0=$(date +%s)
    timeout "$budget" "$@" >"$DEST/$name.log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - t0 ))
    if [ $rc -eq 0 ]; then
        say "PASS $name in ${secs} s"
    else
        say "FAIL $name (exit $rc$( [ $rc -eq 124 ] && echo ': out of time')) in ${secs} s, log $name.log"
        FAILED=1
    fi
    return $rc
}

say "# ramble gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), budget ${BUDGET_S} s"
say "# host $(hostname), load $(cut -d' ' -f1-3 /proc/loadavg)"
say "# $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"

if [ "$DEVICE" = cpu ]; then
    say "# DRY RUN on the CPU (DEVICE=cpu): the plumbing only, nothing about CUDA"
elif ! step device 10 "$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))"; then
    say "no CUDA device: nothing else to check"; exit 1
else
    say "# torch: $(tail -1 "$DEST/device.log")"
fi

# only the files that mention CUDA: collecting the whole suite costs minutes on a slow machine
mapfile -t CUDA_FILES < <(grep -l -i cuda tests/test_*.py)
step cuda_tests 120 "$PY" -m pytest -p no:faulthandler -q -rs -k cuda "${CUDA_FILES[@]}"
say "# cuda tests: $(tail -1 "$DEST/cuda_tests.log")"
grep "SKIPPED" "$DEST/cuda_tests.log" | sed 's/^/#   /' | tee -a "$RESULTS" >/dev/null

step mnist100_a 150 "${RAMBLE[@]}" --quiet mnist run --train-size 100 --solutions 2 --device "$DEVICE" --out "$DEST/mnist100_a.h5" --force
step mnist100_b 150 "${RAMBLE[@]}" --quiet mnist run --train-size 100 --solutions 2 --device "$DEVICE" --out "$DEST/mnist100_b.h5" --force
if [ -f "$DEST/mnist100_a.h5" ] && [ -f "$DEST/mnist100_b.h5" ]; then
    step determinism 30 "${RAMBLE[@]}" diff "$DEST/mnist100_a.h5" "$DEST/mnist100_b.h5"
    say "# ramble diff: $(tail -3 "$DEST/determinism.log" | tr '\n' ' ')"
    "${RAMBLE[@]}" info "$DEST/mnist100_a.h5" >"$DEST/mnist100_a.info" 2>&1 && say "# $(grep -i -m3 'path\|iter' "$DEST/mnist100_a.info" | tr '\n' ' ')"
fi

PH=""
"$PY" -c "import pyhessian" 2>/dev/null || PH="--skip-pyhessian"
[ -n "$PH" ] && say "# PyHessian is not installed: the Hessian benchmark runs without the baseline"
step hessian_bench 120 "$PY" benchmarks/bench_hessian.py --device "$DEVICE" --points 3 --skip-tcm $PH --out "$DEST/bench_hessian_cuda.json"
grep -A6 "^### LeNet5" "$DEST/hessian_bench.log" | tee -a "$RESULTS" >/dev/null
grep "^ratios" "$DEST/hessian_bench.log" | tee -a "$RESULTS" >/dev/null

say "# total $(( $(date +%s) - START )) s; $( [ $FAILED -eq 0 ] && echo 'all steps passed' || echo 'some steps failed or were skipped')"
exit $FAILED
