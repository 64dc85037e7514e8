"""The one experiment driver: config -> data -> solutions -> paths -> straight lines -> connectivity -> HDF5.

Every model runs through :func:`run_experiment`; what differs between models
is an :class:`ExperimentRun` (built by the model's own experiment module).
The driver owns the order of the work, what is committed when, resume,
mid-path checkpoints and routing of failed pairs through a third solution;
the run owns the data, training, the pair's path (waypoints and the norm
escape included) and the straight line.

Every unit is a function of the config alone: solution seeds derive from
the experiment seed and the solution's index (:func:`solution_seed`), and
paths draw no random numbers, so a resumed file holds the same numbers as an
uninterrupted run.
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import numpy as np
import torch

from ramble.analysis.connectivity import store_connectivity
from ramble.core.checkpoint import Checkpoint
from ramble.core.path import PathResult, reversed_path, route_through
from ramble.errors import ConfigError
from ramble.progress import PathProgress, progress_bar
from ramble.storage.checkpoint import CheckpointPolicy, FileCheckpoint
from ramble.storage.io import Experiment, ExperimentWriter, pair_name, path_result

log = logging.getLogger("ramble")

PAIRINGS = ("all", "chain", "star")
"""Which pairs of solutions a run connects (``--pairs``)."""

Weights = Any
"""A solution as the run holds it: a NumPy (P,) array (TCM backends) or a torch (P,) tensor (networks)."""


class ExperimentRun(Protocol):
    """One model's experiment, as :func:`run_experiment` needs it.

    ``model``/``backend``: the file's root attributes; ``config``: the
    file's ``config`` attribute (the whole definition of the run);
    ``n_solutions``, ``pairs`` (a :data:`PAIRINGS` name); ``routes``: whether
    failed pairs may be routed through a third solution (the repair variant).
    """

    model: str
    backend: str
    config: dict
    n_solutions: int
    pairs: str
    routes: bool

    def write_data(self, writer: ExperimentWriter) -> None:
        """Write ``/data`` and ``/model`` (inside the driver's commit)."""
        ...

    def check_data(self, done: Experiment) -> None:
        """FormatError when a resumed file holds other data than this run's."""
        ...

    def train_solution(self, i: int) -> tuple[Weights, dict]:
        """Solution ``i`` and its attributes (seed, epochs, test metrics...)."""
        ...

    def weights_of(self, stored: np.ndarray) -> Weights:
        """A stored solution row as the run holds weights."""
        ...

    def connect(self, w_a: Weights, w_b: Weights, progress: Callable[[int, float], None], checkpoint: Optional[Checkpoint]) -> PathResult:
        """The pair's path inside S (waypoints and norm escape included), as the file will store it."""
        ...

    def straight_line(self, w_a: Weights, w_b: Weights) -> dict[str, np.ndarray]:
        """Loss and error columns at evenly spaced alpha on W_a + alpha (W_b - W_a)."""
        ...


def pair_list(n: int, how: str) -> list[tuple[int, int]]:
    """Pairs of solution indices to connect: every pair, a chain 0-1-2..., or a star from 0."""
    if how == "all":
        return list(itertools.combinations(range(n), 2))
    if how == "chain":
        return [(i, i + 1) for i in range(n - 1)]
    if how == "star":
        return [(0, j) for j in range(1, n)]
    raise ConfigError(f"--pairs must be one of {', '.join(PAIRINGS)}, got {how!r}")


def solution_seed(seed: int, index: int) -> int:
    """Init seed of solution ``index``, derived from the experiment seed (networks; the TCM seeds its restarts itself)."""
    return int(np.random.SeedSequence([seed, 1 + index]).generate_state(1)[0])


def run_experiment(
    run: ExperimentRun,
    out: str | Path,
    *,
    force: bool = False,
    resume: bool = False,
    show_progress: bool = True,
    checkpoints: CheckpointPolicy = CheckpointPolicy(),
    attrs: Optional[dict] = None,
) -> Path:
    """Run ``run`` and write ``out``; returns its path.

    The data, each solution and each path (with its straight line) are
    committed as they finish; a running path commits its state as
    ``checkpoints`` says.  ``resume=True`` continues an interrupted file of
    the same config: what it holds is read back, a path with a checkpoint
    continues from it, and only the rest is computed.  After the pairs,
    failed ones are routed through a third solution when ``run.routes``.
    The file's status is "complete" when every step ran (each path carries
    its own status), "failed" with the error otherwise.  ``attrs``: extra
    root attributes of a new file (e.g. ``hessian_points``).
    """
    started = time.perf_counter()
    pairs = pair_list(run.n_solutions, run.pairs)
    with ExperimentWriter(out, model=run.model, backend=run.backend, config=run.config, force=force, resume=resume, attrs=attrs) as writer:
        done = writer.read() if resume else None
        _write_or_check_data(writer, done, run)
        solutions = _solutions(writer, done, run, show_progress)
        results, lines = _paths(writer, done, run, solutions, pairs, show_progress, checkpoints)
        if run.routes:
            _reroute_failed(writer, results, lines, solutions)
        with writer.commit():
            store_connectivity(writer.f)  # which pairs are joined inside S, from the stored paths
            writer.finish("complete", paths=len(pairs), paths_complete=sum(r.complete for r in results.values()), wall_time=time.perf_counter() - started)
    return Path(out)


def _write_or_check_data(writer: ExperimentWriter, done: Optional[Experiment], run: ExperimentRun) -> None:
    """Commit ``/data`` and ``/model`` to a new file; a resumed file that holds them must hold this run's."""
    if done is None or "name" not in done.model_info:
        with writer.commit():
            run.write_data(writer)
    else:
        run.check_data(done)


def _solutions(writer: ExperimentWriter, done: Optional[Experiment], run: ExperimentRun, show_progress: bool) -> list[Weights]:
    """Every solution: read back from a resumed file, else found by the run and committed one by one."""
    out: list[Weights] = []
    for i in progress_bar(range(run.n_solutions), desc="solutions", disable=not show_progress):
        if done is not None and i in done.solutions:
            out.append(run.weights_of(done.solutions[i]))
            continue
        w, info = run.train_solution(i)
        writer.write_solution(i, as_array(w), info)
        out.append(w)
    return out


def as_array(w: Weights) -> np.ndarray:
    """A solution as the file stores it: a NumPy (P,) array in its own dtype."""
    return w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w)


def _paths(
    writer: ExperimentWriter,
    done: Optional[Experiment],
    run: ExperimentRun,
    solutions: list[Weights],
    pairs: list[tuple[int, int]],
    show_progress: bool,
    checkpoints: CheckpointPolicy,
) -> tuple[dict[tuple[int, int], PathResult], dict[tuple[int, int], dict]]:
    """Every pair's path and straight line: read back from a resumed file (when both are stored), else drawn and committed."""
    results: dict[tuple[int, int], PathResult] = {}
    lines: dict[tuple[int, int], dict] = {}
    for i, j in pairs:
        stored = done.paths.get(pair_name(i, j)) if done is not None else None
        if stored is not None and stored.linear is not None:
            results[(i, j)] = path_result(stored)
            lines[(i, j)] = {"alpha": stored.linear.alpha, "train_loss": stored.linear.train_loss, "train_error": stored.linear.train_error, **stored.linear.extra}
        else:
            results[(i, j)], lines[(i, j)] = _draw_path(writer, run, solutions, i, j, show_progress, checkpoints)
    return results, lines


def _draw_path(writer: ExperimentWriter, run: ExperimentRun, solutions: list[Weights], i: int, j: int, show_progress: bool, checkpoints: CheckpointPolicy) -> tuple[PathResult, dict]:
    """The path i -> j (continued from its checkpoint, if the file holds one) and its straight line, committed together."""
    bar = PathProgress(f"path {i}-{j}", show_progress)
    saver = FileCheckpoint(writer, pair_name(i, j), checkpoints)
    result = run.connect(solutions[i], solutions[j], bar.callback, saver)
    bar.close()
    log.info("path %d-%d: %s after %d iterations (%d accepted, %d repaired, %d refused), %d waypoint(s), %.1f s %s", i, j, result.status, result.iterations,
             result.elastic_accepted, result.elastic_repaired, result.elastic_refused, len(result.waypoints), result.wall_time, result.reason)
    line = run.straight_line(solutions[i], solutions[j])
    with writer.commit():
        writer.write_path(i, j, result)
        writer.write_arrays(f"paths/{i}-{j}/linear", line)
    return result, line


def reroute(results: dict[tuple[int, int], PathResult], solutions: list[np.ndarray]) -> list[tuple[tuple[int, int], int, PathResult]]:
    """For each failed pair (i, j), a path through a solution k joined to both by complete paths.

    Paths are in S whichever way they are walked, so a stored k -> i serves
    as i -> k reversed.  ``solutions``: (P,) float64 arrays.  A path kept at
    a weight stride contributes only its points with weights
    (:func:`ramble.core.path.reversed_path`).  The recorded failure is
    replaced; the path's ``via`` says which solution it goes through.
    """

    def oriented(a: int, b: int) -> Optional[PathResult]:
        r = results.get((a, b))
        if r is not None and r.complete and not r.via:
            return r
        r = results.get((b, a))
        if r is not None and r.complete and not r.via:
            return reversed_path(r)
        return None

    out = []
    for (i, j), r in sorted(results.items()):
        if r.complete:
            continue
        for k in range(len(solutions)):
            if k in (i, j):
                continue
            first, second = oriented(i, k), oriented(k, j)
            if first is not None and second is not None:
                frame = (torch.from_numpy(solutions[i]), torch.from_numpy(solutions[j]))
                routed = route_through(first, second, k, frame)
                routed.reason = ""
                out.append(((i, j), k, routed))
                break
    return out


def _reroute_failed(writer: ExperimentWriter, results: dict[tuple[int, int], PathResult], lines: dict[tuple[int, int], dict], solutions: list[Weights]) -> None:
    """Replace each failed path that :func:`reroute` can route through a third solution, in the file and in ``results``."""
    frames = [as_array(w).astype(np.float64) for w in solutions]
    for (i, j), k, routed in reroute(results, frames):
        log.info("path %d-%d: routed through solution %d (%d iterations)", i, j, k, routed.iterations)
        with writer.commit():
            writer.write_path(i, j, routed)
            writer.write_arrays(f"paths/{i}-{j}/linear", lines[(i, j)])
        results[(i, j)] = routed
