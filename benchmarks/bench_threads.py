"""A small TCM run with and without a concurrent CPU-bound job, before and after ramble's thread policy.

    PYTHONPATH=python .venv/bin/python benchmarks/bench_threads.py [--repeats 1] \
        [--out benchmarks/results/bench_threads.json] [-- extra ramble tcm run arguments]

The run is ``ramble tcm run --backend julia --seed 7312 --solutions 3`` (the
issue's example) in a fresh process, in four settings, interleaved
(``--repeats`` rounds):

* ``before``: the CLI as a user starts it with ``OMP_NUM_THREADS=2`` in the
  environment and no thread policy (torch and Julia's OpenBLAS each take 2
  threads);
* ``after``: the same environment, but the process first calls
  ``ramble.threads.limit_threads(1)`` (torch, NumPy's BLAS via
  threadpoolctl, and ``OPENBLAS_NUM_THREADS=1`` before Julia starts), then
  runs the same CLI command;

each ``quiet`` (nothing of ours running besides) and ``busy`` (a Python
busy loop, one process, running for the whole command: "another job on the
other core").  Wall time is measured around the subprocess.  The load
average is recorded before every command: other people's work on a shared
machine is part of the result and is reported with it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RUN = ["tcm", "run", "--backend", "julia", "--seed", "7312", "--solutions", "3"]
AFTER = "from ramble.threads import limit_threads; limit_threads(1); from ramble.cli import main; main()"
BEFORE = "from ramble.cli import main; main()"
BUSY = "while True: pass"


def load_average() -> str:
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "n/a"


def one_run(policy: str, busy: bool, out: Path, extra: list[str]) -> dict[str, Any]:
    """Wall seconds of one ``ramble tcm run`` in a fresh process; ``busy`` starts a spinning process alongside."""
    env = dict(os.environ, OMP_NUM_THREADS="2")
    for k in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(k, None)
    code = AFTER if policy == "after" else BEFORE
    cmd = [sys.executable, "-c", code, "--quiet", *RUN, "--out", str(out), "--force", *extra]
    spinner = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    load = load_average()
    try:
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    if done.returncode != 0:
        raise SystemExit(f"ramble failed ({policy}, busy={busy}): {done.stderr.strip().splitlines()[-1:]}")
    return {"policy": policy, "busy": busy, "seconds": seconds, "load_before": load}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=1, help="interleaved rounds of the four settings")
    ap.add_argument("--out", default="benchmarks/results/bench_threads.json", help="JSON record ('' for none)")
    ap.add_argument("extra", nargs="*", help="more arguments for ramble tcm run (after --)")
    args = ap.parse_args()
    record: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "ramble_command": "OMP_NUM_THREADS=2 ramble " + " ".join(RUN + args.extra),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs usable, {platform.platform()}",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="ramble-threads-") as tmp:
        for r in range(args.repeats):
            for busy in (False, True):
                for policy in ("before", "after"):
                    row = one_run(policy, busy, Path(tmp) / f"run-{r}-{policy}-{int(busy)}.h5", args.extra)
                    record["runs"].append(row)
                    print(json.dumps(row), flush=True)
    print()
    print("| policy | concurrent job | wall s (each round) | load average before each |")
    print("|---|---|---|---|")
    for busy in (False, True):
        for policy in ("before", "after"):
            rows = [x for x in record["runs"] if x["policy"] == policy and x["busy"] == busy]
            secs = ", ".join(f"{x['seconds']:.1f}" for x in rows)
            loads = "; ".join(x["load_before"] for x in rows)
            print(f"| {policy} | {'yes' if busy else 'no'} | {secs} | {loads} |")
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
        print(f"# wrote {args.out}")


if __name__ == "__main__":
    main()
