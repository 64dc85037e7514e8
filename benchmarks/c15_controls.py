"""C15's controls over several MNIST-100 pairs: does the path's best test error beat SGD trained on as long?

    # three pairs (experiment seeds 1, 2, 3), each ~10 min on one CPU core, then the controls
    python benchmarks/c15_controls.py --seeds 1,2,3 --data-dir /work/shared/mnist --work /tmp/c15 \
        --json benchmarks/results/c15_controls.json

For each seed: ``ramble mnist run --train-size 100 --solutions 2 --seed S``
(resumed when the file is an interrupted run, skipped when complete), then ``ramble controls`` on
it (skipped when stored).  Then, per pair: the path's best test error, the
four controls (each endpoint trained on for the epochs the path spent before
its best point, and until the training loss the path has there), the margin
over the best control in percentage points, and C15's verdict from the
report's own rule (ramble.reporting.report).  Prints a markdown table; ``--json``
writes every number with the command, machine and load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ramble.analysis.controls import margin_points
from ramble.reporting.report import evaluate_claims, mnist_stats
from ramble.storage.io import load


def ramble(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "ramble.cli", "--quiet", *args], check=True)


def status(path: Path) -> str:
    """The file's status, or "missing" when there is no readable file."""
    try:
        return load(path, weights=False).status
    except Exception:  # noqa: BLE001 - a missing or damaged file is run again
        return "missing"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1,2,3", help="experiment seeds, comma-separated")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--work", default="c15-runs", help="folder for the experiment files")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="write the numbers here")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    data = ["--data-dir", a.data_dir] if a.data_dir else []
    timings: dict[str, dict[str, float]] = {}
    files = []
    for seed in (int(s) for s in a.seeds.split(",")):
        f = work / f"mnist100-s{seed}.h5"
        t = time.perf_counter()
        state = status(f)
        if state in ("running", "failed"):  # an interrupted run continues from its last checkpoint
            ramble("resume", str(f))
        elif state != "complete":
            ramble("mnist", "run", "--train-size", "100", "--solutions", "2", "--seed", str(seed), "--device", a.device, *data, "--out", str(f), "--force")
        t_run = time.perf_counter() - t
        t = time.perf_counter()
        if any(p.controls is None for p in load(f, weights=False).iter_paths() if p.complete):
            ramble("controls", str(f), "--device", a.device, *data)
        timings[f.name] = {"run_s (0 if done before)": round(t_run, 1), "controls_s (0 if stored)": round(time.perf_counter() - t, 1)}
        files.append(f)
    exps = [load(f, weights=False) for f in files]
    rows = []
    for e in exps:
        s = mnist_stats(e)
        for q in s["paths"]:
            c = q.get("controls")
            if c is None:
                continue
            rows.append({"file": e.path.name, "seed": e.config.get("seed"), "path": q["path"], "best_test_error": c["best_test_error"], "best_epochs": c["best_epochs"],
                         "best_train_loss": c["best_train_loss"], "margin_points": margin_points(c),
                         **{k: v for k, v in c.items() if k.startswith(("source_", "target_"))}})
    c15 = next(c for c in evaluate_claims([], exps[0], None, exps[1:]) if c.id == "C15")
    print("| seed | path best | epochs to best | matched (source / target) | converged (source / target) | margin [points] |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {100 * r['best_test_error']:.2f} % | {r['best_epochs']} | {100 * r['source_matched_test_error']:.2f} / {100 * r['target_matched_test_error']:.2f} % | "
              f"{100 * r['source_converged_test_error']:.2f} / {100 * r['target_converged_test_error']:.2f} % | {r['margin_points']:+.2f} |")
    margins = [r["margin_points"] for r in rows]
    if margins:
        print(f"\nmargin over the best control: mean {np.mean(margins):+.2f}, sd {np.std(margins, ddof=1) if len(margins) > 1 else float('nan'):.2f}, range {min(margins):+.2f} to {max(margins):+.2f} points over {len(margins)} pair(s)")
    print(f"C15: {c15.holds} ({c15.measured})")
    if a.json:
        out = {"command": " ".join(sys.argv), "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}", "load_average_at_end": os.getloadavg(),
               "timings": timings, "pairs": rows, "c15_holds": c15.holds, "c15_measured": c15.measured}
        Path(a.json).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
