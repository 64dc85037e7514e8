"""`ramble verify` over TCM data sets at the paper's size: is every stored segment of every path certified?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/verify_seeds.py --seeds 108,111 --dir /tmp/verify-seeds

For each seed: ``run_tcm_experiment`` with the default config (Julia
backend, N=300 K=3 M=620, 3 solutions, all pairs), then
:func:`ramble.analysis.verify.verify_file`.  Prints per seed: path outcomes, stored
segments, segments verify certified, the checks that did not pass, and the
seconds of the run and of verify.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

from ramble.analysis.verify import verify_file
from ramble.experiments.tcm_experiment import TCMExperimentConfig, run_tcm_experiment
from ramble.storage.io import load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="101,102,103,104,105,106,107,108,109,110,111,112,113")
    ap.add_argument("--dir", default="verify-seeds")
    a = ap.parse_args()
    folder = Path(a.dir)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"load average at the start: {os.getloadavg()}")
    start = time.perf_counter()
    print("| seed | paths | stored segments | certified | not passed | run s | verify s |\n|---|---|---|---|---|---|---|")
    for seed in (int(s) for s in a.seeds.split(",")):
        out = folder / f"tcm-{seed}.h5"
        t = time.perf_counter()
        run_tcm_experiment(replace(TCMExperimentConfig(), seed=seed), out, force=True, show_progress=False)
        t_run = time.perf_counter() - t
        t = time.perf_counter()
        rep = verify_file(out)
        t_verify = time.perf_counter() - t
        paths = ", ".join(f"{p.name} {p.status}" for p in load(out, weights=False).iter_paths())
        bad = "; ".join(f"{c.name}: {c.result}" for c in rep.checks if c.result not in ("ok", "skip"))
        print(f"| {seed} | {paths} | {rep.segments_checked} | {rep.segments_certified} | {bad or '-'} | {t_run:.0f} | {t_verify:.1f} |", flush=True)
    print(f"{time.perf_counter() - start:.0f} s in all; load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
