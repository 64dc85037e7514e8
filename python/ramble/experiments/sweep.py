"""Sweeps: many TCM experiments (data sets x gamma x N_epochs x variant x lr), run in parallel.

A :class:`SweepConfig` is the grid; :meth:`SweepConfig.tasks` expands it into
one :class:`SweepTask` per (seed, variant, lr, gamma, N_epochs), and each task
is one :func:`ramble.experiments.tcm_experiment.run_tcm_experiment` writing its own HDF5
file (docs/format.md) into the sweep folder, named from its parameters.
Tasks are independent, so they run on an *engine*:

* ``serial`` — one after the other in this process (its thread settings);
* ``local`` — a :class:`concurrent.futures.ProcessPoolExecutor` of
  ``workers`` processes started with "spawn" (never fork: a process may
  hold an embedded Julia, which does not survive a fork);
* ``dask`` — a ``dask.distributed`` cluster: an existing one
  (``scheduler="tcp://host:8786"``), or a ``LocalCluster`` of ``workers``
  processes with one thread each, started for the sweep and closed after it.
  The optional extra ``pip install "ramble[cluster]"`` installs Dask.

Every worker process uses one torch thread and one BLAS thread (so ``n``
workers use ``n`` cores), and starts its own Julia on its first Julia task
(about 2-3 s, once per process).  Workers write the files themselves: on a
multi-machine cluster the sweep folder must be on a file system every worker
sees at the same path.

The folder's ``index.json`` (docs/sweeps.md) lists every task: its
parameters, file, status, path outcomes and wall time.  Only the submitting
process writes it, atomically (temporary file + ``os.replace``) after every
finished task, so it is always a complete JSON document.  A rerun of a sweep
into the same folder skips every task whose file is complete and holds the
same experiment, so an interrupted sweep continues where it stopped and a
sweep can be extended with more values.  :func:`load_sweep` reads it back as
a table.  Run one sweep per folder at a time.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import platform
import re
import socket
import threading
import time
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ramble.core.path import VARIANTS, PathConfig
from ramble.errors import ConfigError, FormatError, RambleError
from ramble.experiments.tcm_experiment import PAIRINGS, TCMExperimentConfig
from ramble.models.tcm_training import TrainConfig
from ramble.progress import progress_bar
from ramble.storage.io import load, make_folder, write_atomically
from ramble.threads import limit_threads

log = logging.getLogger("ramble")

ENGINES: tuple[str, ...] = ("local", "dask", "serial")
INDEX_NAME = "index.json"
INDEX_FORMAT = "ramble-sweep"
INDEX_VERSION = 1
#: Path learning rate when a sweep does not give one: the variant's own default.
DEFAULT_LR = {"paper": PathConfig.paper().lr, "repair": PathConfig().lr}
CLUSTER_HINT = 'pip install "ramble[cluster]"'


# ------------------------------------------------------------------ the grid
@dataclass(frozen=True)
class SweepConfig:
    """A grid of TCM experiments.  Every combination of the tuples is one task.

    ``seeds``: data sets (one random training set each).  ``gammas``: the
    elastic constant of Eq. 3, each in (0, 1].  ``n_epochs``: GD epochs per
    iteration (N_epochs), each >= 0.  ``variants``: path algorithms (``paper``,
    ``repair``).  ``lrs``: path learning rates (eta), each finite >= 0; None
    means each variant's default (0.1 paper, 0.01 repair).  The rest is the
    same for every task: sizes N, K, M, ``n_solutions`` solutions per data set
    joined by ``pairs``, ``backend``, ``linear_points`` on each straight line,
    ``max_iterations`` per path, ``weight_every`` (keep the weights of every
    k-th recorded point of a path, metrics of all: 1 keeps all, which is
    about 12 MB per paper-size experiment), and the solutions' ``train``
    settings.
    """

    seeds: tuple[int, ...]
    gammas: tuple[float, ...]
    n_epochs: tuple[int, ...]
    variants: tuple[str, ...] = ("paper",)
    lrs: Optional[tuple[float, ...]] = None
    n_inputs: int = 300
    n_hidden: int = 3
    n_patterns: int = 620
    n_solutions: int = 3
    pairs: str = "all"
    backend: str = "julia"
    linear_points: int = 101
    max_iterations: int = 20_000
    weight_every: int = 1
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        # Tuples, so the config stays hashable and frozen even when given lists.
        for name in ("seeds", "gammas", "n_epochs", "variants") + (("lrs",) if self.lrs is not None else ()):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_list("--seeds", self.seeds, lambda s: isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0, "must be an integer >= 0")
        _check_list("--gammas", self.gammas, lambda g: _is_real(g) and 0.0 < g <= 1.0, "is outside (0, 1]")
        _check_list("--n-epochs", self.n_epochs, lambda e: isinstance(e, (int, np.integer)) and not isinstance(e, bool) and e >= 0, "must be an integer >= 0")
        _check_list("--variant", self.variants, lambda v: v in VARIANTS, f"is not a variant (expected {' or '.join(VARIANTS)})")
        if self.lrs is not None:
            _check_list("--path-lr", self.lrs, lambda r: _is_real(r) and r >= 0.0, "must be a finite number >= 0")
        if self.pairs not in PAIRINGS:
            raise ConfigError(f"--pairs must be one of {', '.join(PAIRINGS)}, got {self.pairs!r}")
        if self.n_solutions < 2:
            raise ConfigError(f"--solutions must be >= 2 (a path needs two), got {self.n_solutions}")
        # Sizes, backend and the path settings of every task: the experiment's own checks.
        for t in self.tasks():
            t.config  # noqa: B018 - building it validates it

    def lr_values(self, variant: str) -> tuple[float, ...]:
        """Learning rates swept for ``variant`` (its default when ``lrs`` is None)."""
        return self.lrs if self.lrs is not None else (DEFAULT_LR[variant],)

    def tasks(self) -> list["SweepTask"]:
        """Every task, in a fixed order (seed, variant, lr, gamma, N_epochs)."""
        return [
            SweepTask(self, int(s), v, float(lr), float(g), int(e))
            for s in self.seeds
            for v in self.variants
            for lr in self.lr_values(v)
            for g in self.gammas
            for e in self.n_epochs
        ]

    def fixed(self) -> dict[str, Any]:
        """The settings shared by every task (a folder holds one such set)."""
        d = asdict(self)
        for k in ("seeds", "gammas", "n_epochs", "variants", "lrs"):
            d.pop(k)
        return d

    def axes(self) -> dict[str, Any]:
        """The swept values."""
        return {"seeds": list(self.seeds), "gammas": list(self.gammas), "n_epochs": list(self.n_epochs), "variants": list(self.variants), "lrs": None if self.lrs is None else list(self.lrs)}

    @property
    def n_paths(self) -> int:
        """Paths in the whole sweep (pairs per task x tasks)."""
        from ramble.experiments.driver import pair_list

        return len(pair_list(self.n_solutions, self.pairs)) * len(self.tasks())


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(float(x))


def _check_list(option: str, values: Sequence[Any], ok: Callable[[Any], bool], what: str) -> None:
    if len(values) == 0:
        raise ConfigError(f"{option} is empty: give at least one value")
    seen: set = set()
    for v in values:
        if not ok(v):
            raise ConfigError(f"{option}: {v!r} {what}")
        if v in seen:
            # two tasks with the same parameters would write the same file
            raise ConfigError(f"{option} lists {v!r} twice")
        seen.add(v)


@dataclass(frozen=True)
class SweepTask:
    """One experiment of a sweep: a data set (``seed``) and one setting of the path algorithm."""

    sweep: SweepConfig
    seed: int
    variant: str
    lr: float
    gamma: float
    n_epochs: int

    @property
    def file(self) -> str:
        """File name from the parameters; ``repr`` keeps floats exact (0.001, 3e-05)."""
        return f"tcm-seed{self.seed}-{self.variant}-lr{self.lr!r}-gamma{self.gamma!r}-epochs{self.n_epochs}.h5"

    @property
    def path_config(self) -> PathConfig:
        s = self.sweep
        if self.variant == "paper":
            return PathConfig.paper(gamma=self.gamma, n_epochs=self.n_epochs, lr=self.lr, max_iterations=s.max_iterations, weight_every=s.weight_every)
        return PathConfig(variant="repair", gamma=self.gamma, n_epochs=self.n_epochs, lr=self.lr, max_iterations=s.max_iterations, weight_every=s.weight_every)

    @property
    def config(self) -> TCMExperimentConfig:
        s = self.sweep
        return TCMExperimentConfig(
            n_inputs=s.n_inputs, n_hidden=s.n_hidden, n_patterns=s.n_patterns, seed=self.seed, n_solutions=s.n_solutions,
            pairs=s.pairs, backend=s.backend, linear_points=s.linear_points, train=s.train, path=self.path_config,
        )

    def params(self) -> dict[str, Any]:
        return {"file": self.file, "seed": self.seed, "variant": self.variant, "lr": self.lr, "gamma": self.gamma, "n_epochs": self.n_epochs}


# ------------------------------------------------------------------ workers
_worker_ready = False
_julia_thread: Optional[Any] = None
_julia_thread_lock = threading.Lock()


def _worker_init() -> None:
    """Once per worker process: one torch thread, one BLAS thread (set before Julia starts)."""
    global _worker_ready
    if _worker_ready:
        return
    limit_threads(1)  # torch, NumPy's BLAS (threadpoolctl), and the env that Julia's BLAS reads when it starts
    _worker_ready = True


def run_task(config: TCMExperimentConfig, out: str) -> dict[str, Any]:
    """Run one experiment into ``out`` (resuming an interrupted file of the same experiment); return its outcome.

    Never raises for a failed experiment: the error goes into the outcome
    (``status`` "failed", ``error``), so one bad task does not stop a sweep.
    """
    from ramble.experiments.tcm_experiment import run_tcm_experiment

    started, cpu = time.perf_counter(), time.process_time()
    outcome: dict[str, Any] = {"worker": f"{socket.gethostname()}:{os.getpid()}", "started": _now()}
    try:
        try:  # an interrupted file of this very experiment keeps its finished solutions and paths
            run_tcm_experiment(config, out, resume=Path(out).exists(), show_progress=False)
        except RambleError as e:
            if not str(e).startswith(("cannot resume", f"{out} is not a readable", f"{out} has status")):
                raise
            run_tcm_experiment(config, out, force=True, show_progress=False)
        outcome.update(file_outcome(Path(out)))
    except Exception as e:  # noqa: BLE001 - recorded in the index; the sweep goes on
        outcome.update(status="failed", error=_one_line(e), paths=[])
    outcome["wall_time"] = time.perf_counter() - started
    # CPU seconds of the worker process (all its threads): with wall_time, how much of a core the task got
    outcome["cpu_time"] = time.process_time() - cpu
    outcome["finished"] = _now()
    return outcome


def _run_task_in_pool(config: TCMExperimentConfig, out: str) -> dict[str, Any]:
    """Entry point in a ``local`` pool worker (runs on the process's main thread)."""
    _worker_init()
    return run_task(config, out)


def _run_task_in_dask(config: TCMExperimentConfig, out: str) -> dict[str, Any]:
    """Entry point in a Dask worker.

    Dask runs tasks on threads of its own pool, and which thread may change
    between tasks; an embedded Julia must always be called from the thread
    that started it.  So every task of this process runs on one long-lived
    thread (a one-thread executor that lives as long as the process).
    """
    global _julia_thread
    from concurrent.futures import ThreadPoolExecutor

    _worker_init()
    with _julia_thread_lock:
        if _julia_thread is None:
            _julia_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ramble-task")
    return _julia_thread.submit(run_task, config, out).result()


def file_outcome(path: Path, experiment: Optional[Any] = None) -> dict[str, Any]:
    """Status and per-path outcomes of an experiment file, for the index (``experiment``: it, already loaded)."""

    e = experiment if experiment is not None else load(path, weights=False)
    paths = []
    for p in e.iter_paths():
        via = p.attrs.get("via", [])
        via = [via] if isinstance(via, int) else list(via)
        paths.append({
            "pair": p.name, "status": p.status, "reason": p.reason, "iterations": int(p.attrs.get("iterations", 0) or 0),
            "waypoints": int(p.attrs.get("waypoints", 0) or 0), "via": via, "escape_scale": float(p.attrs.get("escape_scale", 1.0) or 1.0),
            "wall_time": float(p.attrs.get("wall_time", 0.0) or 0.0),
            "elastic_accepted": int(p.attrs.get("elastic_accepted", 0) or 0), "elastic_refused": int(p.attrs.get("elastic_refused", 0) or 0),
            # farthest normalised distance toward W_b (1 = arrived): how far a failed path got
            "reached": float(np.max(p.distance)) if len(p.distance) else 0.0,
        })
    out: dict[str, Any] = {"status": "done" if e.status == "complete" else "failed", "error": str(e.attrs.get("error", "")), "paths": paths}
    if "wall_time" in e.attrs:
        out["experiment_time"] = float(e.attrs["wall_time"])
    return out


# ------------------------------------------------------------------ the index
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return msg if isinstance(e, RambleError) else f"{type(e).__name__}: {msg}"


def write_json_atomic(path: Path, doc: Any) -> None:
    """Write ``doc`` as JSON to ``path`` all-or-nothing (:func:`ramble.storage.io.write_atomically`)."""
    write_atomically(path, json.dumps(doc, indent=1, default=_json_default).encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_index(path: Path) -> dict[str, Any]:
    """The index document at ``path``; FormatError if it is not a ramble sweep index."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FormatError(f"{path}: no such sweep index") from None
    except (OSError, ValueError) as e:
        raise FormatError(f"{path} is not a readable sweep index ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
        raise FormatError(f"{path} is not a ramble sweep index (format {doc.get('format') if isinstance(doc, dict) else None!r}, expected {INDEX_FORMAT!r})")
    if not isinstance(doc.get("version"), int) or doc["version"] > INDEX_VERSION:
        raise FormatError(f"{path} has sweep index version {doc.get('version')}; this ramble reads versions 1..{INDEX_VERSION} (upgrade ramble)")
    return doc


def _same_experiment(stored: Any, wanted: Any, where: str = "") -> list[str]:
    """Keys whose values differ (keys missing on one side are not compared: added defaults)."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        out: list[str] = []
        for k in wanted:
            if k in stored:
                out += _same_experiment(stored[k], wanted[k], f"{where}.{k}" if where else k)
        return out
    if isinstance(stored, float) or isinstance(wanted, float):
        try:
            return [] if float(stored) == float(wanted) else [where]
        except (TypeError, ValueError):
            return [where]
    return [] if stored == wanted else [where]


def finished_file(path: Path, config: TCMExperimentConfig) -> Optional[dict[str, Any]]:
    """The outcome (:func:`file_outcome`) if ``path`` is a complete file of exactly this experiment, else None.

    A complete file needs not run again.  A complete file of a *different*
    experiment raises RambleError rather than being overwritten: the folder
    belongs to another sweep.
    """
    if not path.exists():
        return None

    try:
        e = load(path, weights=False)
    except FormatError:
        return None
    if e.status != "complete":
        return None
    diff = _same_experiment(e.config, json.loads(json.dumps(config.to_dict())))
    if diff:
        raise RambleError(f"{path} holds a different experiment ({', '.join(diff[:4])} differ); sweep into another --out folder, or delete the file")
    return file_outcome(path, e)


# ------------------------------------------------------------------ running
@dataclass
class SweepRun:
    """What :func:`run_sweep` did: the index file, tasks run / skipped / failed, wall time (s)."""

    folder: Path
    index: Path
    run: int
    skipped: int
    failed: list[str]
    wall_time: float


def run_sweep(
    cfg: SweepConfig,
    out_dir: str | os.PathLike,
    engine: str = "local",
    workers: Optional[int] = None,
    scheduler: Optional[str] = None,
    show_progress: bool = True,
) -> SweepRun:
    """Run every unfinished task of ``cfg`` into ``out_dir`` on ``engine``; keep ``index.json`` current.

    ``workers``: processes for ``local`` and a Dask ``LocalCluster`` (default:
    the cores available); ``scheduler``: address of an existing Dask cluster
    (then ``workers`` is the cluster's).  Failed tasks are recorded in the
    index and do not stop the others; the caller decides what a failure
    means (the CLI exits with status 1).
    """
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if scheduler is not None and engine != "dask":
        raise ConfigError(f"--scheduler is for --engine dask, not {engine}")
    if scheduler is not None and workers is not None:
        raise ConfigError("--workers starts a local Dask cluster; with --scheduler the cluster's own workers run the sweep")
    if engine == "dask":
        _need_dask()
    n_workers = workers if workers is not None else max(1, len(os.sched_getaffinity(0)))
    folder = make_folder(Path(out_dir), "sweep folder")
    index_path = folder / INDEX_NAME
    doc = _open_index(index_path, cfg)
    entries: dict[str, dict[str, Any]] = {t["file"]: t for t in doc["tasks"]}
    tasks = cfg.tasks()
    todo: list[SweepTask] = []
    for t in tasks:
        outcome = finished_file(folder / t.file, t.config)
        if outcome is not None:
            # refreshed from the file; timings kept (None if it finished but was never indexed: a lost index, a kill between file and index)
            old = entries.get(t.file, {})
            entries[t.file] = {**t.params(), "wall_time": None, **{k: v for k, v in old.items() if k not in outcome}, **outcome}
            continue
        entries[t.file] = {**t.params(), "status": "pending", "error": "", "paths": []}
        todo.append(t)
    doc["tasks"] = list(entries.values())
    started_at, started = _now(), time.perf_counter()
    run_record = {"engine": engine, "workers": None if scheduler else n_workers, "scheduler": scheduler, "started": started_at, "tasks": len(tasks), "to_run": len(todo), "host": platform.node()}
    doc.setdefault("runs", []).append(run_record)
    write_json_atomic(index_path, doc)
    log.info("sweep: %d tasks (%d paths), %d already done, engine %s", len(tasks), cfg.n_paths, len(tasks) - len(todo), engine)

    failed: list[str] = []
    bar = progress_bar(total=len(todo), desc=f"sweep ({engine})", disable=not show_progress, unit="task", leave=True)

    def record(task: SweepTask, outcome: dict[str, Any]) -> None:
        entries[task.file] = {**task.params(), **outcome}
        if outcome["status"] != "done":
            failed.append(f"{task.file}: {outcome.get('error', '')}")
            log.warning("sweep: %s failed: %s", task.file, outcome.get("error", ""))
        doc["tasks"] = list(entries.values())
        doc["updated"] = _now()
        write_json_atomic(index_path, doc)
        bar.update(1)
        bar.set_postfix(failed=len(failed), refresh=False)

    try:
        if todo:
            if engine == "serial":
                _run_serial(todo, folder, record)
            elif engine == "local":
                _run_local(todo, folder, n_workers, record)
            else:
                _run_dask(todo, folder, n_workers, scheduler, record)
    finally:
        bar.close()
        run_record["wall_time"] = time.perf_counter() - started
        run_record["failed"] = len(failed)
        doc["tasks"] = list(entries.values())
        write_json_atomic(index_path, doc)
    return SweepRun(folder, index_path, len(todo), len(tasks) - len(todo), failed, run_record["wall_time"])


def _open_index(index_path: Path, cfg: SweepConfig) -> dict[str, Any]:
    """The folder's index, or a new one; refuses a folder swept with other fixed settings."""
    fixed = json.loads(json.dumps(cfg.fixed()))
    if index_path.exists():
        doc = read_index(index_path)
        diff = _same_experiment(doc.get("fixed", {}), fixed)
        if diff:
            raise RambleError(f"{index_path.parent} holds a sweep with other settings ({', '.join(diff[:4])} differ); use another --out folder")
        # settings added to ramble since the folder was made are recorded now (each file is still checked on its own)
        doc["fixed"] = {**fixed, **doc.get("fixed", {})}
        axes = doc.setdefault("axes", {})
        # the union of what was ever swept here: an extended sweep keeps its earlier values
        for k, v in cfg.axes().items():
            old = axes.get(k) or []
            axes[k] = None if v is None and not old else list(dict.fromkeys([*old, *(v or [])]))
        return doc
    return {"format": INDEX_FORMAT, "version": INDEX_VERSION, "created": _now(), "updated": _now(), "fixed": fixed, "axes": cfg.axes(), "runs": [], "tasks": []}


def _run_serial(todo: list[SweepTask], folder: Path, record: Callable[[SweepTask, dict], None]) -> None:
    import torch

    # one thread, as in the workers (more threads on a loaded 2-core machine
    # made small TCM runs 10-30x slower); the caller's torch setting comes back after
    threads = torch.get_num_threads()
    limit_threads(1)
    try:
        for t in todo:
            record(t, run_task(t.config, str(folder / t.file)))
    finally:
        torch.set_num_threads(threads)


def _run_local(todo: list[SweepTask], folder: Path, n_workers: int, record: Callable[[SweepTask, dict], None]) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(n_workers, len(todo)), mp_context=ctx)
    try:
        futures: dict[Future, SweepTask] = {pool.submit(_run_task_in_pool, t.config, str(folder / t.file)): t for t in todo}
        for fut in as_completed(futures):
            t = futures[fut]
            try:
                outcome = fut.result()
            except Exception as e:  # noqa: BLE001 - a worker that died (BrokenProcessPool): recorded, the sweep goes on
                outcome = {"status": "failed", "error": f"worker died: {_one_line(e)}", "paths": []}
            record(t, outcome)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _need_dask() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ConfigError(f"--engine dask needs dask.distributed, which is not installed: {CLUSTER_HINT}") from None


def _run_dask(todo: list[SweepTask], folder: Path, n_workers: int, scheduler: Optional[str], record: Callable[[SweepTask, dict], None]) -> None:
    import distributed

    cluster = None
    try:
        if scheduler:
            try:
                client = distributed.Client(scheduler, timeout="10s")
            except (OSError, TimeoutError, ValueError) as e:
                raise RambleError(f"cannot reach the Dask scheduler at {scheduler}: {_one_line(e)}") from None
        else:
            # processes, one thread each: the work holds the GIL (and Julia is per process)
            cluster = distributed.LocalCluster(n_workers=min(n_workers, len(todo)), threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR)
            client = distributed.Client(cluster)
    except RambleError:
        raise
    except Exception as e:  # noqa: BLE001 - cluster start-up problems become one line
        if cluster is not None:
            cluster.close()
        raise RambleError(f"cannot start a local Dask cluster: {_one_line(e)}") from None
    try:
        futures = {}
        for t in todo:
            fut = client.submit(_run_task_in_dask, t.config, str((folder / t.file).resolve()), pure=False, key=f"ramble-{t.file}-{os.getpid()}-{time.time_ns()}")
            futures[fut] = t
        for fut in distributed.as_completed(list(futures)):
            t = futures[fut]
            try:
                outcome = fut.result()
            except Exception as e:  # noqa: BLE001 - KilledWorker and the like: recorded, the sweep goes on
                outcome = {"status": "failed", "error": f"dask: {_one_line(e)}", "paths": []}
            if outcome.get("status") == "done" and not (folder / t.file).exists():
                outcome = {**outcome, "status": "failed", "error": f"the worker wrote {t.file} where this machine does not see it: the sweep folder must be shared by every worker"}
            record(t, outcome)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ------------------------------------------------------------------ reading
FAILURE_KINDS = ("GD step left S", "stalled", "iteration limit", "other")


def failure_kind(reason: str) -> str:
    """Short class of a failed path's reason: the paper's "eta, gamma not properly set" is "GD step left S"."""
    r = reason.lower()
    if "gradient-descent step left s" in r or "gd step left s" in r:
        return "GD step left S"
    if r.startswith("stalled") or "stalled" in r:
        return "stalled"
    if "iteration limit" in r:
        return "iteration limit"
    return "other"


@dataclass(frozen=True)
class TaskKey:
    """The parameters that tell one task (experiment file) of a sweep from the others."""

    file: str
    seed: int
    variant: str
    lr: float
    gamma: float
    n_epochs: int


@dataclass(frozen=True)
class TaskRow(TaskKey):
    """One task (experiment file) of a sweep.  ``wall_time``: seconds in the worker (None if skipped before it was timed)."""

    status: str
    error: str
    paths: int
    paths_complete: int
    wall_time: Optional[float]
    worker: str


@dataclass(frozen=True)
class PathRow(TaskKey):
    """One path of a sweep: its task's parameters and its outcome.

    ``reached``: the farthest normalised distance toward W_b (1 on a complete
    path); ``elastic_accepted``/``elastic_refused``: elastic steps taken and
    refused (a stall with most refused met a wall of S; with most accepted,
    GD undid the pull).
    """

    pair: str
    status: str
    reason: str
    iterations: int
    waypoints: int
    routed: bool
    elastic_accepted: int = 0
    elastic_refused: int = 0
    reached: float = float("nan")

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def failure(self) -> str:
        """"" when complete, else :func:`failure_kind` of the reason."""
        return "" if self.complete else failure_kind(self.reason)


@dataclass(frozen=True)
class SuccessCell:
    """Success of the paths at one (variant, lr, gamma, N_epochs): ``complete`` of ``paths``; ``failures`` by kind; ``task_errors``: tasks that produced no paths."""

    variant: str
    lr: float
    gamma: float
    n_epochs: int
    paths: int
    complete: int
    failures: dict[str, int]
    task_errors: int

    @property
    def rate(self) -> float:
        return self.complete / self.paths if self.paths else float("nan")


@dataclass
class Sweep:
    """A loaded sweep: ``tasks`` (one row per experiment file) and ``paths`` (one row per path)."""

    folder: Path
    index: dict[str, Any]
    tasks: list[TaskRow]
    paths: list[PathRow]

    @property
    def fixed(self) -> dict[str, Any]:
        return self.index.get("fixed", {})

    def success(self) -> list[SuccessCell]:
        """Success per (variant, lr, gamma, N_epochs), sorted; only tasks that are done count paths."""
        keys = sorted({(t.variant, t.lr, t.gamma, t.n_epochs) for t in self.tasks})
        cells = []
        for k in keys:
            ps = [p for p in self.paths if (p.variant, p.lr, p.gamma, p.n_epochs) == k]
            errs = sum(1 for t in self.tasks if (t.variant, t.lr, t.gamma, t.n_epochs) == k and t.status == "failed")
            cells.append(SuccessCell(*k, paths=len(ps), complete=sum(p.complete for p in ps), failures=dict(Counter(p.failure for p in ps if not p.complete)), task_errors=errs))
        return cells

    def paths_array(self) -> np.ndarray:
        """The path rows as a NumPy structured array (fields of :class:`PathRow` plus ``complete``)."""
        dt = [("file", "U200"), ("seed", "i8"), ("variant", "U16"), ("lr", "f8"), ("gamma", "f8"), ("n_epochs", "i8"), ("pair", "U16"), ("status", "U16"), ("reason", "U300"), ("iterations", "i8"), ("waypoints", "i8"), ("routed", "?"), ("elastic_accepted", "i8"), ("elastic_refused", "i8"), ("reached", "f8"), ("complete", "?")]
        return np.array([(*(getattr(p, n) for n, _ in dt[:-1]), p.complete) for p in self.paths], dtype=dt)


def load_sweep(folder_or_index: str | os.PathLike, from_files: bool = False) -> Sweep:
    """Read a sweep: a folder holding ``index.json``, or the index file itself.

    By default the path outcomes come from the index; ``from_files=True``
    reads them from the experiment files instead (the files are the record;
    the index is a summary of them), and skips tasks whose file is missing.
    """
    p = Path(folder_or_index)
    index_path = p / INDEX_NAME if p.is_dir() else p
    doc = read_index(index_path)
    folder = index_path.parent
    tasks: list[TaskRow] = []
    paths: list[PathRow] = []
    for t in doc.get("tasks", []):
        base = dict(file=t["file"], seed=int(t["seed"]), variant=str(t["variant"]), lr=float(t["lr"]), gamma=float(t["gamma"]), n_epochs=int(t["n_epochs"]))
        status, error, outs = str(t.get("status", "")), str(t.get("error", "")), t.get("paths", [])
        if from_files and status in ("done", "failed"):
            f = folder / t["file"]
            if f.exists():
                o = file_outcome(f)
                status, error, outs = o["status"], o["error"], o["paths"]
            elif status == "done":
                raise FormatError(f"{f}: listed as done in {index_path} but missing")
        tasks.append(TaskRow(**base, status=status, error=error, paths=len(outs), paths_complete=sum(o["status"] == "complete" for o in outs), wall_time=t.get("wall_time"), worker=str(t.get("worker", ""))))
        if status != "done":
            continue
        for o in outs:
            paths.append(PathRow(**base, pair=str(o["pair"]), status=str(o["status"]), reason=str(o.get("reason", "")), iterations=int(o.get("iterations", 0)), waypoints=int(o.get("waypoints", 0)), routed=bool(o.get("via")),
                                 elastic_accepted=int(o.get("elastic_accepted", 0)), elastic_refused=int(o.get("elastic_refused", 0)), reached=float(o.get("reached", float("nan")))))
    return Sweep(folder, doc, tasks, paths)


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    """``"101-104,110"`` -> (101, 102, 103, 104, 110); ConfigError naming ``option`` otherwise."""
    out: list[int] = []
    for part in (s.strip() for s in text.split(",")):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ConfigError(f"{option}: range {part!r} runs backwards")
            out.extend(range(lo, hi + 1))
            continue
        try:
            out.append(int(part))
        except ValueError:
            raise ConfigError(f"{option}: {part!r} is not an integer or a range like 101-104") from None
    return tuple(out)


def parse_float_list(text: str, option: str) -> tuple[float, ...]:
    """``"0.001,1e-2"`` -> (0.001, 0.01); ConfigError naming ``option`` otherwise."""
    out: list[float] = []
    for part in (s.strip() for s in text.split(",")):
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            raise ConfigError(f"{option}: {part!r} is not a number") from None
        if not math.isfinite(v):
            raise ConfigError(f"{option}: {part!r} is not a finite number")
        out.append(v)
    return tuple(out)
