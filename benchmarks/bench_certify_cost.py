"""What certified paths cost in Julia: the same find_path before and after certification, best of many.

    git archive <commit-before> | tar -x -C /tmp/before
    python benchmarks/bench_certify_cost.py --before /tmp/before/julia/src --seeds 1-3 --repeats 15

For each seed (paper size N=300, K=3, M=620) three solutions are trained by
the current Julia backend (``solve_with_restarts``, as ``ramble tcm run``
does), and every pair's single-leg path (``Ramble.find_path`` with the
default ``PathConfig``, no waypoints) is timed in ONE Julia process that has
loaded both the old and the new ``Ramble`` as two modules, alternating old
and new calls, ``--repeats`` times each after one warm-up call.  On a loaded
machine wall times swing widely; the best (minimum) of the alternated calls
is the figure compared, the median is shown too.  Also reported: iterations
of each, and the new code's own certification seconds.  Single-threaded.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ramble.julia.backend import JuliaTCM  # noqa: E402
from ramble.models.patterns import random_patterns  # noqa: E402
from ramble.models.tcm import gaussian_init  # noqa: E402
from ramble.models.tcm_training import TrainConfig, solve_with_restarts  # noqa: E402

NEW_SRC = Path(__file__).resolve().parents[1] / "julia" / "src"

JULIA = r"""
module Old; include(ARGS[1] * "/Ramble.jl"); end
module New; include(ARGS[2] * "/Ramble.jl"); end
using Statistics
dir, R = ARGS[3], parse(Int, ARGS[4])
readf(name, n) = (a = Vector{Float64}(undef, n); read!(joinpath(dir, name), a); a)
readi(name, n) = (a = Vector{Int8}(undef, n); read!(joinpath(dir, name), a); a)
meta = split(read(joinpath(dir, "meta.txt"), String))
N, K, M, nseeds = parse.(Int, meta[1:4])
seeds = parse.(Int, meta[5:end])
for s in seeds
    X = reshape(readi("X$s.bin", N * M), N, M); y = readi("y$s.bin", M)
    sols = [readf("w$(s)_$i.bin", N) for i in 0:2]
    mo, mn = Old.Ramble.TCM(X, y, K), New.Ramble.TCM(X, y, K)
    for (i, j) in ((1, 2), (1, 3), (2, 3))
        ro = Old.Ramble.find_path(mo, sols[i], sols[j], Old.Ramble.PathConfig())
        rn = New.Ramble.find_path(mn, sols[i], sols[j], New.Ramble.PathConfig())
        to, tn, cs = Float64[], Float64[], Float64[]
        for r in 1:R
            push!(to, @elapsed Old.Ramble.find_path(mo, sols[i], sols[j], Old.Ramble.PathConfig()))
            t = @elapsed (rn = New.Ramble.find_path(mn, sols[i], sols[j], New.Ramble.PathConfig()))
            push!(tn, t); push!(cs, rn.cert_seconds)
        end
        println("ROW ", s, " ", i - 1, "-", j - 1, " ", ro.status, " ", rn.status, " ", ro.iterations, " ", rn.iterations, " ",
                minimum(to), " ", median(to), " ", minimum(tn), " ", median(tn), " ", median(cs), " ", rn.segments_certified)
    end
end
"""


def seed_list(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True, help="julia/src of the code before certification")
    ap.add_argument("--seeds", default="1-3")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "bench_certify_cost.json")
    args = ap.parse_args()
    seeds = seed_list(args.seeds)
    n, k, m = 300, 3, 620
    tcfg = TrainConfig()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for s in seeds:
            p = random_patterns(n, m, s)
            be = JuliaTCM(p, k)
            scale = tcfg.init_scale / np.sqrt(n // k)
            for i in range(3):
                sol = solve_with_restarts(lambda w0: be.gd_solve(w0, tcfg), lambda q: gaussian_init(n, scale, q), s, i, tcfg)
                sol.w.astype(np.float64).tofile(d / f"w{s}_{i}.bin")
            np.ascontiguousarray(p.inputs, dtype=np.int8).tofile(d / f"X{s}.bin")  # (M, N) row-major = N x M column-major
            p.labels.astype(np.int8).tofile(d / f"y{s}.bin")
        (d / "meta.txt").write_text(" ".join(str(v) for v in [n, k, m, len(seeds), *seeds]))
        (d / "bench.jl").write_text(JULIA)
        load0 = os.getloadavg()
        out = subprocess.run(["julia", "--startup-file=no", str(d / "bench.jl"), args.before, str(NEW_SRC), str(d), str(args.repeats)],
                             capture_output=True, text=True, check=True).stdout
        load1 = os.getloadavg()
    rows = []
    for line in out.splitlines():
        if not line.startswith("ROW "):
            continue
        f = line.split()[1:]
        rows.append({"seed": int(f[0]), "pair": f[1], "status_before": f[2], "status_after": f[3], "iterations_before": int(f[4]),
                     "iterations_after": int(f[5]), "best_before_s": float(f[6]), "median_before_s": float(f[7]),
                     "best_after_s": float(f[8]), "median_after_s": float(f[9]), "cert_s_median": float(f[10]),
                     "segments_certified": int(f[11])})
    print(f"load average (1, 5, 15 min) at start {load0}, at end {load1}\n")
    print("| seed | pair | iterations before / after | best s before / after | ratio | per iteration | median s before / after | certifier s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["best_after_s"] / r["best_before_s"]
        per_it = (r["best_after_s"] / r["iterations_after"]) / (r["best_before_s"] / r["iterations_before"])
        r["ratio"], r["ratio_per_iteration"] = ratio, per_it
        print(f"| {r['seed']} | {r['pair']} | {r['iterations_before']} / {r['iterations_after']} | {r['best_before_s']:.3f} / {r['best_after_s']:.3f} "
              f"| {ratio:.2f} | {per_it:.2f} | {r['median_before_s']:.3f} / {r['median_after_s']:.3f} | {r['cert_s_median']:.3f} |")
    tot_b = sum(r["best_before_s"] for r in rows)
    tot_a = sum(r["best_after_s"] for r in rows)
    print(f"\nall pairs: best-of times summed {tot_b:.3f} s before, {tot_a:.3f} s after: x{tot_a / tot_b:.2f}")
    args.json.write_text(json.dumps({
        "command": f"python benchmarks/bench_certify_cost.py --before {args.before} --seeds {args.seeds} --repeats {args.repeats}",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_start": load0, "load_end": load1},
        "rows": rows, "sum_best_before_s": tot_b, "sum_best_after_s": tot_a,
    }, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
