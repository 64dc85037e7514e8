"""One TCM experiment (paper Sect. 3.1): data -> solutions -> paths -> straight lines -> HDF5.

The data are drawn in Python from the seed and handed to the chosen backend
(Julia or Python); everything the run needs to be redone is in the file's
``config`` attribute.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

from ramble.analysis.connectivity import store_connectivity
from ramble.core.path import PathConfig, PathResult, reversed_path, route_through
from ramble.errors import ConfigError, DataError, FormatError, RambleError
from ramble.models.patterns import Patterns, random_patterns
from ramble.models.tcm import check_shape, gaussian_init
from ramble.models.tcm_backends import BACKENDS, TCMBackend, connect, make_backend
from ramble.models.tcm_training import TrainConfig, solve_with_restarts
from ramble.progress import PathProgress, progress_bar
from ramble.storage.io import Experiment, ExperimentWriter, pair_name, path_result

log = logging.getLogger("ramble")

PAIRINGS = ("all", "chain", "star")


@dataclass(frozen=True)
class TCMExperimentConfig:
    """Everything that defines a TCM run.  Sizes: N inputs, K hidden units, M patterns."""

    n_inputs: int = 300
    n_hidden: int = 3
    n_patterns: int = 620
    seed: int = 101
    n_solutions: int = 3
    pairs: str = "all"
    backend: str = "julia"
    linear_points: int = 101
    train: TrainConfig = field(default_factory=TrainConfig)
    path: PathConfig = field(default_factory=PathConfig)

    def __post_init__(self) -> None:
        check_shape(self.n_inputs, self.n_hidden)
        if self.n_patterns < 1:
            raise ConfigError(f"M must be a positive integer, got {self.n_patterns}")
        if self.n_solutions < 1:
            raise ConfigError(f"--solutions must be >= 1, got {self.n_solutions}")
        if self.pairs not in PAIRINGS:
            raise ConfigError(f"--pairs must be one of {', '.join(PAIRINGS)}, got {self.pairs!r}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; expected one of: {', '.join(BACKENDS)}")
        if self.linear_points < 2:
            raise ConfigError(f"--linear-points must be >= 2, got {self.linear_points}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {self.seed}")

    def to_dict(self) -> dict:
        return asdict(self)


def pair_list(n: int, how: str) -> list[tuple[int, int]]:
    """Pairs of solution indices to connect: every pair, a chain 0-1-2..., or a star from 0."""
    if how == "all":
        return list(itertools.combinations(range(n), 2))
    if how == "chain":
        return [(i, i + 1) for i in range(n - 1)]
    if how == "star":
        return [(0, j) for j in range(1, n)]
    raise ConfigError(f"--pairs must be one of {', '.join(PAIRINGS)}, got {how!r}")


def reroute(results: dict[tuple[int, int], PathResult], solutions: list[np.ndarray]) -> list[tuple[tuple[int, int], int, PathResult]]:
    """For each failed pair (i, j), a path through a solution k joined to both by complete paths.

    Paths are in S whichever way they are walked, so a stored k -> i serves
    as i -> k reversed.  The recorded failure is replaced; the path's ``via``
    says which solution it goes through.
    """
    import torch

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


def run_tcm_experiment(
    cfg: TCMExperimentConfig,
    out: str | Path,
    force: bool = False,
    show_progress: bool = True,
    resume: bool = False,
    attrs: Optional[dict] = None,
) -> Path:
    """Run the experiment and write ``out``; returns its path.

    The file's status is "complete" when every step ran (individual paths
    carry their own status), "failed" with the error otherwise.  The data,
    each solution and each path (with its straight line) are committed to the
    file as they finish; ``resume=True`` continues an interrupted file of the
    same config, reading back what it holds and computing only the rest.
    Every unit is a function of the config alone (solution seeds derive from
    ``cfg.seed`` and the solution's index; paths draw no random numbers), so
    the resumed file holds the same numbers as an uninterrupted run.
    ``attrs``: extra root attributes of a new file (e.g. ``hessian_points``).
    """
    started = time.perf_counter()
    patterns = random_patterns(cfg.n_inputs, cfg.n_patterns, cfg.seed)
    backend = make_backend(cfg.backend, patterns, cfg.n_hidden)
    with ExperimentWriter(out, model="tcm", backend=backend.name, config=cfg.to_dict(), force=force, resume=resume, attrs=attrs) as writer:
        done = writer.read() if resume else None
        _write_or_check_data(writer, done, patterns, cfg, out)
        solutions = _solutions(writer, done, backend, cfg, show_progress)
        pairs = pair_list(cfg.n_solutions, cfg.pairs)
        results, lines = _paths(writer, done, backend, cfg, solutions, pairs, show_progress)
        if cfg.path.variant == "repair":
            _reroute_failed(writer, results, lines, solutions)
        n_complete = sum(r.complete for r in results.values())
        with writer.commit():
            store_connectivity(writer.f)  # which pairs are joined inside S, from the stored paths
            writer.finish("complete", paths=len(pairs), paths_complete=n_complete, wall_time=time.perf_counter() - started)
    return Path(out)


def _write_or_check_data(writer: ExperimentWriter, done: Optional[Experiment], patterns: Patterns, cfg: TCMExperimentConfig, out: str | Path) -> None:
    """Commit the data set and ``/model`` to a new file; a resumed file must hold the very data the seed draws."""
    if done is None or "train_inputs" not in done.data:
        with writer.commit():
            writer.write_tcm_data(patterns.inputs, patterns.labels, cfg.seed)
            writer.set_attrs("model", tcm_model_attrs(cfg))
    elif not (np.array_equal(done.data["train_inputs"], patterns.inputs) and np.array_equal(done.data["train_labels"], patterns.labels)):
        raise FormatError(f"cannot resume {out}: its stored data set differs from the one seed {cfg.seed} draws")


def _solutions(writer: ExperimentWriter, done: Optional[Experiment], backend: TCMBackend, cfg: TCMExperimentConfig, show_progress: bool) -> list[np.ndarray]:
    """The ``cfg.n_solutions`` solutions (each (N,)): read back from a resumed file, else trained and committed one by one."""
    scale = cfg.train.init_scale / np.sqrt(cfg.n_inputs // cfg.n_hidden)
    solutions: list[np.ndarray] = []
    for i in progress_bar(range(cfg.n_solutions), desc="solutions", disable=not show_progress):
        if done is not None and i in done.solutions:
            solutions.append(done.solutions[i])
        else:
            solutions.append(_train_solution(writer, backend, cfg, scale, i))
    return solutions


def _train_solution(writer: ExperimentWriter, backend: TCMBackend, cfg: TCMExperimentConfig, scale: float, i: int) -> np.ndarray:
    """Train solution ``i`` (Gaussian starts of std ``scale``, restarts seeded by ``cfg.seed`` and ``i``), commit it, return it."""
    sol = solve_with_restarts(
        lambda w0: backend.gd_solve(w0, cfg.train),
        lambda s: gaussian_init(cfg.n_inputs, scale, s),
        cfg.seed,
        i,
        cfg.train,
        log=log.info,
    )
    log.info("solution %d: %d attempt(s), %d epochs, %d kicks, min margin %.3g, %.1f s", i, sol.attempts, sol.epochs, sol.kicks, sol.min_margin, sol.seconds)
    writer.write_solution(
        i,
        sol.w,
        {"init_seed": sol.seed, "attempts": sol.attempts, "epochs": sol.epochs, "kicks": sol.kicks, "polish_epochs": sol.polish_epochs, "min_margin": sol.min_margin, "seconds": sol.seconds},
    )
    return sol.w


def _paths(
    writer: ExperimentWriter,
    done: Optional[Experiment],
    backend: TCMBackend,
    cfg: TCMExperimentConfig,
    solutions: list[np.ndarray],
    pairs: list[tuple[int, int]],
    show_progress: bool,
) -> tuple[dict[tuple[int, int], PathResult], dict[tuple[int, int], dict]]:
    """Every pair's path and straight line: read back from a resumed file (when both are stored), else drawn and committed."""
    results: dict[tuple[int, int], PathResult] = {}
    lines: dict[tuple[int, int], dict] = {}
    for i, j in pairs:
        stored = done.paths.get(pair_name(i, j)) if done is not None else None
        if stored is not None and stored.linear is not None:
            results[(i, j)] = path_result(stored)
            lines[(i, j)] = {"alpha": stored.linear.alpha, "train_loss": stored.linear.train_loss, "train_error": stored.linear.train_error}
        else:
            results[(i, j)], lines[(i, j)] = _draw_path(writer, backend, cfg, solutions, i, j, show_progress)
    return results, lines


def _draw_path(writer: ExperimentWriter, backend: TCMBackend, cfg: TCMExperimentConfig, solutions: list[np.ndarray], i: int, j: int, show_progress: bool) -> tuple[PathResult, dict]:
    """The path i -> j and its straight line (``cfg.linear_points`` points), committed together."""
    bar = PathProgress(f"path {i}-{j}", show_progress)
    result = connect(backend, solutions[i], solutions[j], cfg.path, cfg.train, progress=bar.callback)
    bar.close()
    log.info("path %d-%d: %s after %d iterations (%d accepted, %d repaired, %d refused) %s", i, j, result.status, result.iterations, result.elastic_accepted, result.elastic_repaired, result.elastic_refused, result.reason)
    line = backend.straight_line(solutions[i], solutions[j], cfg.linear_points)
    with writer.commit():
        writer.write_path(i, j, result)
        writer.write_arrays(f"paths/{i}-{j}/linear", line)
    return result, line


def _reroute_failed(writer: ExperimentWriter, results: dict[tuple[int, int], PathResult], lines: dict[tuple[int, int], dict], solutions: list[np.ndarray]) -> None:
    """Replace each failed path that :func:`reroute` can route through a third solution, in the file and in ``results``."""
    for (i, j), k, routed in reroute(results, solutions):
        log.info("path %d-%d: routed through solution %d (%d iterations)", i, j, k, routed.iterations)
        with writer.commit():
            writer.write_path(i, j, routed)
            writer.write_arrays(f"paths/{i}-{j}/linear", lines[(i, j)])
        results[(i, j)] = routed


def tcm_model_attrs(cfg: TCMExperimentConfig) -> dict:
    """``/model`` attributes: what the flat weight vector and the loss are."""
    return {
        "name": "tree committee machine",
        "N": cfg.n_inputs,
        "K": cfg.n_hidden,
        "layout": "flat w of length N; hidden unit k owns entries k*N/K .. (k+1)*N/K-1, aligned with its inputs",
        "loss": "mean over patterns of log(1 + exp(-2 sigma S)), S = sum_k htanh(h_k)",
    }


# ----------------------------------------------------------------------------- the TCM as a ModelSpec

TCM_ROW_CHUNK = 256
"""Weight rows whose margins :func:`tcm_counter` computes in one einsum."""

NO_TEST_TCM = "TCM: random labels have no rule to learn, so there is no test set and no test error"


def tcm_refusal(file: str | Path) -> str:
    """Why ``ramble align`` leaves TCM files alone (one line)."""
    return (f"{file} is a TCM file: the tree committee machine has no permutation symmetry that keeps its input blocks fixed, "
            "so there is nothing to align (docs/align.md)")


def stored_config(d: dict) -> TCMExperimentConfig:
    """The TCMExperimentConfig of a file's parsed ``config`` attribute (KeyError/TypeError when this ramble cannot read it back)."""
    return TCMExperimentConfig(**dict(d, train=TrainConfig(**d["train"]), path=PathConfig.from_dict(d["path"])))


def stored_problem(f: Any) -> Any:
    """The TCM of an open file (:class:`ramble.storage.views.StoredFile`), rebuilt from ``/data/train`` and ``/model`` K (float64)."""
    from ramble.models.tcm import TCMProblem

    inputs, labels = f.train_set()
    k = int(f.model_attrs()["K"])
    return TCMProblem(Patterns(inputs=inputs, labels=labels, seed=int(f.data_attrs().get("seed", 0))), k)


def tcm_counter(f: Any) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    """Training errors per weight row (R, P) -> (R,) of a TCM file (open or a handle), rebuilt from ``/data/train`` and ``/model`` K (torch float64, rows in chunks); and M."""
    import torch

    from ramble.storage.views import as_stored

    problem = stored_problem(as_stored(f))

    def count(weights: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, len(weights), TCM_ROW_CHUNK):
            w = torch.from_numpy(np.ascontiguousarray(weights[s : s + TCM_ROW_CHUNK], dtype=np.float64))
            h = torch.einsum("mkn,tkn->tmk", problem.xi, w.view(len(w), problem.n_hidden, problem.n_per_unit))
            margins = problem.sigma * torch.nn.functional.hardtanh(h).sum(dim=2)
            out.append((margins <= 0).sum(dim=1).numpy())
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    return count, problem.n_samples


def exact_certifier(f: Any) -> Callable[[np.ndarray, np.ndarray, bool], Any]:
    """``certify(row0, row1, chord)``: exact certificates (:meth:`ramble.models.tcm.TCMProblem.certify_segment`) in float64; ``chord`` does not matter."""
    import torch

    problem = stored_problem(f)

    def certify(r0: np.ndarray, r1: np.ndarray, chord: bool) -> Any:
        return problem.certify_segment(torch.from_numpy(np.asarray(r0, dtype=np.float64)), torch.from_numpy(np.asarray(r1, dtype=np.float64)))

    return certify


class TCMSpec:
    """The tree committee machine (paper Sect. 3.1) as a :class:`ramble.models.registry.ModelSpec`."""

    name = "tcm"
    label = "tree committee machine"
    loss_label = "mean training loss, nats"
    exact_hessians = True

    def error_counter(self, path: str | Path, *, data_dir: Optional[str] = None, device: str = "cpu") -> tuple[Callable[[np.ndarray], np.ndarray], int]:
        """:func:`tcm_counter` of the file at ``path`` (``data_dir`` and ``device`` do not apply: the data are in the file, the count is float64 on the CPU)."""
        from ramble.storage.views import open_stored

        with open_stored(path) as f:
            return tcm_counter(f)

    def eq4_groups(self, model_info: Mapping[str, Any]) -> list[slice]:
        """One group: the N weights of the flat vector."""
        return [slice(0, int(model_info["N"]))]

    def file_problem(self, e: Experiment, data_dir: Optional[str] = None, device: str = "auto") -> Any:
        """The TCM from ``/data/train`` (float64, CPU), the solutions, no test measure; DataError when the file holds no training set."""
        import torch

        from ramble.analysis.curves import FileProblem
        from ramble.models.tcm import TCMProblem

        if "train_inputs" not in e.data:
            raise DataError(f"{e.path} holds no TCM training set (/data/train)")
        k = int(e.model_info.get("K", e.config.get("n_hidden", 0)))
        prob = TCMProblem(Patterns(e.data["train_inputs"], e.data["train_labels"], int(e.data.get("seed", 0))), k)
        sols = {i: torch.from_numpy(np.asarray(w, dtype=np.float64)) for i, w in e.solutions.items()}
        return FileProblem(prob, sols, None, NO_TEST_TCM, "cpu", "float64")

    def spectra(self, e: Experiment, rows: np.ndarray, cfg: Any, weights: Any, data_dir: Optional[str] = None, device: str = "auto", backend: Optional[str] = None,
                callback: Optional[Callable[[int], Any]] = None) -> dict[str, Any]:
        """Exact Hessians at ``rows`` (:func:`ramble.analysis.spectra.tcm_spectra`) with ``backend`` or the file's."""
        from ramble.analysis.spectra import tcm_spectra

        return tcm_spectra(e, weights, rows, cfg, backend, callback=callback)

    def resume(self, path: Path, stored: Mapping[str, Any], show_progress: bool, checkpoints: Any) -> None:
        run_tcm_experiment(stored_config(dict(stored)), path, show_progress=show_progress, resume=True)

    def hessian_subset(self, stored: Mapping[str, Any]) -> Optional[int]:
        """None (every pattern); reads ``stored`` back first, so an unreadable config fails here."""
        stored_config(dict(stored))
        return None

    def hessian_device(self, stored: Mapping[str, Any]) -> str:
        return "auto"

    def data_label(self, e: Experiment) -> str:
        """Sizes and seed: "N=…, K=…, M=…, seed …"."""
        c = e.config
        return f"N={c.get('n_inputs')}, K={c.get('n_hidden')}, M={c.get('n_patterns')}, seed {c.get('seed')}"

    def figure_name(self, e: Experiment) -> str:
        return "TCM"

    def describe_data(self, e: Experiment) -> Optional[str]:
        """"M random +-1 patterns of N inputs (seed s)" when the file holds its patterns."""
        if "train_inputs" not in e.data:
            return None
        m, n = e.data["train_inputs"].shape
        return f"{m} random +-1 patterns of {n} inputs (seed {e.data.get('seed')})"

    def verify_setup(self, f: Any, *, data_dir: Optional[str], device: str, segments: bool, max_pieces: int, any_complete: bool) -> Any:
        """Every row counted exactly (slack 0.5 samples), every segment certified exactly; the data are in the file."""
        from ramble.models.registry import VerifySetup

        return VerifySetup(counter=tcm_counter(f), certifier=exact_certifier(f) if segments else None, all_rows=True, error_slack=0.5)

    def replayer(self, f: Any, *, data_dir: Optional[str], device: str) -> tuple[None, str]:
        return None, "TCM files store every vertex: the segments check certifies them exactly"

    def align_refusal(self, path: Any) -> Optional[str]:
        return tcm_refusal(path)

    def connect(self, problem: Any, w_a: Any, w_b: Any, cfg: Any, *, measure: Any, train_lr: float, max_epochs: int, progress: Any) -> Any:
        """Not for align (:meth:`align_refusal` refuses TCM files first); TCM paths are drawn by the run's backend (:func:`ramble.models.tcm_backends.connect`)."""
        raise RambleError("align draws no TCM paths: the tree committee machine has nothing to align (docs/align.md)")


SPEC = TCMSpec()
