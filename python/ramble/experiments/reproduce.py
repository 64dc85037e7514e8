"""``ramble reproduce``: the paper's experiments, figures and report in one folder.

Each experiment is one ``ramble`` command run in its own process (a TCM data
set, MNIST-100, whole MNIST, the examples' MLP), several at a time, longest
first; its output file and log go under ``OUT/``.  The examples' MLP
(``examples/own_model.py``) is found only in a checkout: from an installed
package, or without scikit-learn, its job is skipped, and the log, ``meta.json``
and the report say why.  A finished experiment (a complete file) is
not run again, so an interrupted ``reproduce`` picks up where it stopped.
The report (:mod:`ramble.reporting.report`) is drawn from the files alone.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ramble.errors import ConfigError, FormatError, RambleError
from ramble.storage.io import load, make_folder, open_checked
from ramble.threads import worker_env

log = logging.getLogger("ramble")

SCALES = ("quick", "paper", "tiny")


@dataclass(frozen=True)
class Scale:
    """How much of the paper to run.

    ``tcm_seeds``: data sets (3 solutions and all 3 paths each);
    ``tcm_hessian_points``: exact spectra per TCM path; ``mnist_gamma``: the
    MNIST-100 path's elastic constant (the paper's is 0.001);
    ``mnist_points``: points with test metrics; ``mnist_hessian_points``: top-20
    spectra per MNIST path; ``full_hessian_points``: on whole MNIST.
    ``c15_seeds``: more MNIST-100 runs (these experiment seeds) whose
    controls (``ramble controls``) C15 counts beside the main run's;
    ``control_args``: options of ``ramble controls``.
    """

    tcm_seeds: tuple[int, ...]
    tcm_hessian_points: int
    mnist_gamma: float
    mnist_points: int
    mnist_hessian_points: int
    full_hessian_points: int
    tcm_size: tuple[int, int, int] = (300, 3, 620)
    mnist_extra: tuple[str, ...] = ()
    many_solutions: int = 5
    convexity_samples: int = 1000
    mnist_convexity_samples: int = 500
    curve_args: tuple[str, ...] = ()
    c15_seeds: tuple[int, ...] = ()
    control_args: tuple[str, ...] = ()
    align_args: tuple[str, ...] = ("--no-path",)
    """Options of ``ramble align`` on the MNIST-100 pair: the aligned ramble path (as long as the run's own) only at the paper scale."""
    example_train_size: int = 200
    """Training digits of the examples' MLP job (the example's own default); its test set is the last 500 digits."""
    example_args: tuple[str, ...] = ()
    """More options of its ``ramble torch run``."""


SCALE_SETTINGS = {
    # Sized for a 2-core CPU in under 15 minutes (benchmarks/README.md).
    "quick": Scale(tcm_seeds=(101, 102, 103), tcm_hessian_points=10, mnist_gamma=0.001, mnist_points=100, mnist_hessian_points=20, full_hessian_points=10),
    # Sect. 3 of the paper: 10 data sets x 3 solutions, every pair.
    "paper": Scale(tcm_seeds=tuple(range(101, 111)), tcm_hessian_points=20, mnist_gamma=0.001, mnist_points=200, mnist_hessian_points=40, full_hessian_points=20, convexity_samples=2000, mnist_convexity_samples=2000, c15_seeds=(1, 2, 3), align_args=()),
    # For tests: every step, at toy sizes (N=60 TCM; 200 test images, few points).
    "tiny": Scale(
        tcm_seeds=(4,), tcm_hessian_points=4, mnist_gamma=0.1, mnist_points=20, mnist_hessian_points=3, full_hessian_points=3,
        tcm_size=(60, 3, 100), mnist_extra=("--test-size", "200", "--n-epochs", "1", "--weight-rows", "5", "--linear-points", "5"),
        many_solutions=4, convexity_samples=50, mnist_convexity_samples=20, curve_args=("--steps", "30", "--points", "7"),
        control_args=("--max-epochs", "40", "--evaluations", "5"),
        example_train_size=80, example_args=("--points", "30", "--weight-rows", "10", "--linear-points", "11"),
    ),
}

#: The examples' one-file model (an MLP on scikit-learn's 8x8 digits) and its factory; its data come from its digits(train_size).
EXAMPLE_FILE = "own_model.py"
EXAMPLE_FACTORY = "build_mlp"
EXAMPLE_JOB = "example-mlp"
EXAMPLE_LABEL = "the examples' MLP (examples/own_model.py through `ramble torch run`)"
#: The example's own training and path settings (examples/own_model.py, main()), as ``ramble torch run`` options.
EXAMPLE_RUN_ARGS = ("--train-lr", "0.5", "--gamma", "0.05", "--path-lr", "0.05", "--points", "100", "--weight-rows", "50")


@dataclass
class Job:
    """One experiment: a ``ramble`` command writing ``out``; ``weight`` orders longest first."""

    name: str
    args: list[str]
    out: Path
    weight: float
    seconds: float = 0.0
    status: str = "pending"
    log: Optional[Path] = None
    error: str = ""
    analyses: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(HDF5 object the analysis stores, ``ramble`` arguments before FILE) run on the finished file."""
    prepare: Optional[Callable[[], None]] = None
    """Run (in this process) before the command, e.g. to write its input data; an exception fails the job."""
    skipped: str = ""
    """Why the job cannot run here ('' when it can); a skipped job is reported, not run."""


def checkout_examples() -> Path:
    """The ``examples/`` folder of the checkout this ramble is imported from (python/ramble/ -> the repository root).

    An installed package has none: the examples live in the repository only.
    """
    return Path(__file__).resolve().parents[3] / "examples"


def example_unavailable(example: Path) -> str:
    """Why the examples' MLP cannot run here: its file is missing, or scikit-learn (its data) is; '' when it can."""
    if not example.is_file():
        return f"{example} not found (ramble is imported from {Path(__file__).resolve().parents[1]}, not from a checkout with its examples/ folder)"
    if importlib.util.find_spec("sklearn") is None:
        return "scikit-learn is not installed; the example's 8x8 digits come with it (pip install scikit-learn)"
    return ""


def write_example_data(example: Path, npz: Path, train_size: int) -> None:
    """The example's own split, ``digits(train_size)`` of ``example``, as the .npz ``ramble torch run --data`` reads.

    Written once (atomically): a resumed run must find the same data, whose sha256 its file records.
    """
    if npz.is_file():
        return
    spec = importlib.util.spec_from_file_location("ramble_reproduce_example", example)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    x, y, x_test, y_test = module.digits(train_size)
    npz.parent.mkdir(parents=True, exist_ok=True)
    part = npz.with_name(npz.stem + ".part.npz")
    np.savez(part, train_inputs=x.numpy(), train_labels=y.numpy(), test_inputs=x_test.numpy(), test_labels=y_test.numpy())
    part.replace(npz)


def example_mlp_job(out_dir: Path, scale: Scale, examples_dir: Path) -> Job:
    """The examples' MLP: two solutions and their path on the example's digits (CPU: the net is tiny), then its pair aligned.

    The aligned ramble path is drawn at every scale: for this model it costs
    about as much as the run's own path, seconds (benchmarks/README.md).
    """
    example = examples_dir / EXAMPLE_FILE
    model = f"{example}:{EXAMPLE_FACTORY}"
    data = out_dir / "examples" / f"digits-{scale.example_train_size}.npz"
    args = ["torch", "run", "--model", model, "--data", str(data), "--solutions", "2", "--device", "cpu", *EXAMPLE_RUN_ARGS, *scale.example_args]
    align = ("paths/0-1/align/weights", ("align", "--pair", "0-1", "--method", "weights", "--model", model, "--device", "cpu"))
    prepare = lambda: write_example_data(example, data, scale.example_train_size)
    return Job(EXAMPLE_JOB, args, out_dir / "examples" / f"{EXAMPLE_JOB}.h5", 0.5, analyses=(align,), prepare=prepare, skipped=example_unavailable(example))


def plan(out_dir: Path, scale: Scale, tcm_backend: str, full_mnist: bool, data_dir: Optional[str], device: str, c15_seeds: Optional[tuple[int, ...]] = None, examples_dir: Optional[Path] = None) -> list[Job]:
    """The experiments to run, longest first, each with the analyses beyond the paper it gets.

    ``examples_dir``: where ``own_model.py`` is (default: the checkout's ``examples/``).
    """
    jobs: list[Job] = []
    data = ["--data-dir", data_dir] if data_dir else []
    convexity = ("convexity", ("convexity", "--samples", str(scale.convexity_samples)))
    curves = ("paths/0-1/curves/bezier", ("curves", "--pair", "0-1", *scale.curve_args))
    lenet_opts = tuple(data) + (("--device", device) if device != "auto" else ())
    controls = ("paths/0-1/controls", ("controls", *scale.control_args, *lenet_opts))
    # Beyond the paper: the pair aligned by Git Re-Basin weight matching, its straight line held against S (docs/align.md).
    align = ("paths/0-1/align/weights", ("align", "--pair", "0-1", "--method", "weights", *scale.align_args))
    if full_mnist:
        jobs.append(Job("mnist-full", ["mnist", "run", "--train-size", "60000", "--solutions", "2", "--device", device, "--hessian-points", str(scale.full_hessian_points), *data], out_dir / "mnist" / "mnist-full.h5", 100.0))
    jobs.append(
        Job(
            "mnist-100",
            ["mnist", "run", "--train-size", "100", "--solutions", "2", "--device", device, "--gamma", str(scale.mnist_gamma), "--n-epochs", "5", "--points", str(scale.mnist_points), "--hessian-points", str(scale.mnist_hessian_points), *data, *scale.mnist_extra],
            out_dir / "mnist" / "mnist-100.h5",
            10.0,
            analyses=(("convexity", ("convexity", "--samples", str(scale.mnist_convexity_samples), *lenet_opts)), (curves[0], curves[1] + lenet_opts), (align[0], align[1] + lenet_opts), controls),
        )
    )
    # C15's controls on more pairs: MNIST-100 at other experiment seeds, no Hessians
    for seed in scale.c15_seeds if c15_seeds is None else c15_seeds:
        args = ["mnist", "run", "--train-size", "100", "--solutions", "2", "--device", device, "--gamma", str(scale.mnist_gamma), "--n-epochs", "5", "--points", str(scale.mnist_points), "--seed", str(seed), *data, *scale.mnist_extra]
        jobs.append(Job(f"c15-mnist-100-seed-{seed}", args, out_dir / "mnist" / f"c15-mnist-100-seed-{seed}.h5", 9.0, analyses=(controls,)))
    n, k, m = scale.tcm_size
    size = ["-N", str(n), "-K", str(k), "-M", str(m)]
    for i, s in enumerate(scale.tcm_seeds):
        args = ["tcm", "run", "--backend", tcm_backend, "--seed", str(s), "--solutions", "3", "--hessian-points", str(scale.tcm_hessian_points), *size]
        jobs.append(Job(f"tcm-{s}", args, out_dir / "tcm" / f"tcm-{s}.h5", 1.0, analyses=(convexity,) + ((curves,) if i == 0 else ())))
    # Beyond the paper: many solutions of one data set, every pair (connectivity, convexity).
    s = scale.tcm_seeds[0]
    args = ["tcm", "run", "--backend", tcm_backend, "--seed", str(s), "--solutions", str(scale.many_solutions), "--pairs", "all", *size]
    jobs.append(Job(f"many-tcm-{s}", args, out_dir / "beyond" / f"many-tcm-{s}.h5", 2.0, analyses=(convexity,)))
    # Beyond the paper: alignment on a model other than LeNet5, the examples' MLP (docs/align.md).
    jobs.append(example_mlp_job(out_dir, scale, examples_dir if examples_dir is not None else checkout_examples()))
    return sorted(jobs, key=lambda j: -j.weight)


def finished(path: Path, analyses: tuple = ()) -> bool:
    """True if ``path`` is a complete ramble file holding every analysis' output (so the job need not run again)."""
    if not path.exists():
        return False

    try:
        if load(path, weights=False).status != "complete":
            return False
        with open_checked(path) as f:
            return all(name in f for name, _ in analyses)
    except FormatError:
        return False


def run_job(job: Job, out_dir: Path) -> Job:
    """Run one job's command in a subprocess, its output into ``OUT/logs/<name>.log``.

    An interrupted file of the same job (status running or failed) is
    resumed, not started again; one written with other settings is replaced.
    """
    job.out.parent.mkdir(parents=True, exist_ok=True)
    job.log = out_dir / "logs" / f"{job.name}.log"
    job.log.parent.mkdir(parents=True, exist_ok=True)
    env = worker_env(1)  # one thread per job: jobs run side by side, and their linear algebra is small
    t = time.perf_counter()
    tries = [["--resume", str(job.out)], ["--out", str(job.out), "--force"]] if job.out.exists() else [["--out", str(job.out), "--force"]]
    if finished(job.out):  # only analyses are missing
        tries = []
    rc = 0
    try:
        with open(job.log, "w") as fh:
            if tries and job.prepare is not None:
                rc = _prepare(job, fh)
            for how in tries if rc == 0 else []:
                fh.write("$ ramble " + " ".join([*job.args, *how]) + "\n")
                fh.flush()
                start = fh.tell()
                rc = subprocess.call([sys.executable, "-m", "ramble.cli", *job.args, *how], stdout=fh, stderr=subprocess.STDOUT, env=env)
                if rc == 0 or how[0] != "--resume" or not _unresumable(job.log, start):
                    break
            if rc == 0:
                rc = _run_analyses(job, fh, env)
    except OSError as e:  # a full disk or a file size limit: one line naming the log, not a traceback
        raise RambleError(f"cannot write {job.log}: {e.strerror or e}") from None
    job.seconds = time.perf_counter() - t
    if rc == 0:
        job.status = "done"
    else:
        job.status = "failed"
        lines = job.log.read_text().strip().splitlines()
        job.error = lines[-1] if lines else f"exit status {rc}"
    return job


def _prepare(job: Job, fh: Any) -> int:
    """Run ``job.prepare``; 1 with its error as the log's last line when it raises (it may be an example's code: any error)."""
    try:
        job.prepare()  # type: ignore[misc]
    except Exception as e:  # noqa: BLE001 - reported in the log and the job's status, not as a traceback
        fh.write(f"error: preparing {job.name} failed: {type(e).__name__}: {' '.join(str(e).split())[:200]}\n")
        return 1
    return 0


def _run_analyses(job: Job, fh: Any, env: dict) -> int:
    """Run the job's analyses whose output the file lacks (each an all-or-nothing commit); first non-zero exit status."""

    with open_checked(job.out) as f:
        todo = [cmd for name, cmd in job.analyses if name not in f]
    for cmd in todo:
        args = ["--quiet", *cmd, str(job.out)]
        fh.write("$ ramble " + " ".join(args) + "\n")
        fh.flush()
        rc = subprocess.call([sys.executable, "-m", "ramble.cli", *args], stdout=fh, stderr=subprocess.STDOUT, env=env)
        if rc != 0:
            return rc
    return 0


#: Errors of ``--resume`` after which the job starts afresh: the file is of another job, or unreadable.
UNRESUMABLE = ("cannot resume", "not a readable HDF5 file", "not a ramble file", "damaged ramble file", "format version")


def _unresumable(log: Path, start: int) -> bool:
    with open(log) as fh:
        fh.seek(start)
        text = fh.read()
    return any(s in text for s in UNRESUMABLE)


def machine_meta() -> dict:
    """Software and machine facts for the report."""
    import numpy
    import torch

    meta = {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
    }
    from ramble import __version__

    meta["ramble"] = __version__
    try:
        from ramble.julia.bridge import bridge_info

        # The experiments ran Julia in their own processes; the report's process
        # needs only the version and the bridge, so it does not start Julia.
        info = bridge_info(start=False)
        meta["julia"] = str(info.get("version", "?"))
        meta["julia bridge"] = str(info.get("bridge", "?"))
    except Exception as e:  # noqa: BLE001 - the report says Julia was unusable rather than failing
        meta["julia"] = f"unavailable ({e})"
    return meta


def reproduce(out_dir: str | Path, scale: str = "quick", tcm_backend: str = "julia", full_mnist: Optional[bool] = None, jobs: Optional[int] = None, data_dir: Optional[str] = None, device: str = "auto", show_progress: bool = True, c15_seeds: Optional[tuple[int, ...]] = None) -> Path:
    """Run the experiments of ``scale`` into ``out_dir``, then the figures and REPORT.md; returns the report's path.

    ``c15_seeds``: instead of the scale's, the seeds of the extra MNIST-100 runs whose controls C15 counts.
    """
    import torch

    n_jobs = _check_inputs(scale, tcm_backend, jobs, data_dir, device)
    if full_mnist is None:
        full_mnist = torch.cuda.is_available()
    out = make_folder(Path(out_dir), "output folder")
    started = time.perf_counter()
    todo = plan(out, SCALE_SETTINGS[scale], tcm_backend, full_mnist, data_dir, device, c15_seeds)
    _mark_done_or_skipped(todo)
    pending = [j for j in todo if j.status == "pending"]
    skipped = {j.name: j.skipped for j in todo if j.status == "skipped"}
    _say(f"reproduce ({scale}): {len(todo)} experiments, {len(todo) - len(pending) - len(skipped)} already done, {len(skipped)} skipped, {n_jobs} at a time", show_progress)
    for name, why in skipped.items():
        log.warning("reproduce: skipping %s: %s", name, why)
    _run_all(pending, out, n_jobs, show_progress)
    failed = [j for j in todo if j.status == "failed"]
    meta = _write_meta(out, scale, tcm_backend, todo, started, skipped)
    report = _write_the_report(out, todo, skipped, meta)
    if failed:
        why = "; ".join(f"{j.name}: {j.error.removeprefix('error: ')}" for j in failed)
        raise RambleError(f"{len(failed)} experiment(s) failed ({why}); see {out / 'logs'}; the report covers the rest: {report}")
    return report


def _check_inputs(scale: str, tcm_backend: str, jobs: Optional[int], data_dir: Optional[str], device: str) -> int:
    """Refuse bad input before any job starts, not in each job's log minutes later; the number of jobs at a time."""
    if scale not in SCALE_SETTINGS:
        raise ConfigError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if tcm_backend not in ("julia", "python"):
        raise ConfigError(f"--tcm-backend must be julia or python, got {tcm_backend!r}")
    n_jobs = jobs if jobs is not None else max(1, len(os.sched_getaffinity(0)))
    if n_jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {n_jobs}")
    from ramble.models.lenet import resolve_device
    from ramble.models.mnist import load_mnist

    resolve_device(device)  # an unknown device, or CUDA where there is none
    if tcm_backend == "julia":
        from ramble.julia.bridge import locate_julia

        locate_julia()  # no Julia: JuliaError saying how to install it
    load_mnist(data_dir, 1, 1)  # MNIST missing or corrupt (checksums): DataError naming the file
    return n_jobs


def _mark_done_or_skipped(todo: list[Job]) -> None:
    """Status "done (earlier run)" for a job whose file is complete with its analyses, "skipped" for one that cannot run here."""
    for j in todo:
        if finished(j.out, j.analyses):
            j.status = "done (earlier run)"
        elif j.skipped:
            j.status = "skipped"


def _run_all(pending: list[Job], out: Path, n_jobs: int, show_progress: bool) -> None:
    """Run the jobs in order, ``n_jobs`` at a time, each in its own process; a line as each starts and ends."""
    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        running: dict[Future, Job] = {}
        queue = list(pending)
        while queue or running:
            while queue and len(running) < n_jobs:
                j = queue.pop(0)
                _say(f"  start  {j.name}", show_progress)
                running[pool.submit(run_job, j, out)] = j
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                j = running.pop(fut)
                fut.result()
                left = len(queue) + len(running)
                _say(f"  {j.status:<6} {j.name} in {j.seconds:.0f} s ({left} left){': ' + j.error if j.error else ''}", show_progress)


def _write_meta(out: Path, scale: str, tcm_backend: str, todo: list[Job], started: float, skipped: dict[str, str]) -> dict:
    """The machine, the settings, each job's time and all jobs' since ``started`` (perf_counter), failures and skips, as ``OUT/meta.json``; returned for the report."""
    meta = machine_meta()
    meta["scale"] = scale
    meta["tcm backend"] = tcm_backend
    meta["job wall time: run + analyses + process start (s)"] = {j.name: round(j.seconds, 1) for j in todo if j.seconds}
    meta["reproduce wall time, all jobs (s)"] = round(time.perf_counter() - started, 1)
    meta["failed experiments"] = {j.name: j.error for j in todo if j.status == "failed"}
    meta["skipped experiments"] = skipped
    try:
        (out / "meta.json").write_text(json.dumps(meta, indent=1))
    except OSError as e:  # a full disk: one line naming the file
        raise RambleError(f"cannot write {out / 'meta.json'}: {e.strerror or e}") from None
    return meta


def _write_the_report(out: Path, todo: list[Job], skipped: dict[str, str], meta: dict) -> Path:
    """The report (figures, REPORT.md, claims.json) from the files of the jobs that are done."""
    from ramble.reporting.report import write_report

    # a job that exited 0 wrote a complete file; one done earlier was checked above
    done = {j.name: j.out for j in todo if j.status.startswith("done")}
    tcm_files = [out for name, out in done.items() if name.startswith("tcm-")]
    beyond = [out for name, out in done.items() if name.startswith("many-")]
    m100 = done.get("mnist-100")
    mfull = done.get("mnist-full")
    try:
        c15 = [out for name, out in done.items() if name.startswith("c15-")]
        example = [done[EXAMPLE_JOB]] if EXAMPLE_JOB in done else []
        not_run = [f"{EXAMPLE_LABEL}: {skipped[EXAMPLE_JOB]}"] if EXAMPLE_JOB in skipped else []
        return write_report(out, tcm_files, m100, mfull, meta, beyond_files=beyond, control_files=c15, align_files=example, align_not_run=not_run)
    except OSError as e:
        raise RambleError(f"cannot write the report into {out}: {e.strerror or e}") from None


def _say(msg: str, show: bool) -> None:
    if show:
        print(msg, file=sys.stderr, flush=True)
    else:
        log.info(msg)
