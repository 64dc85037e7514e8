"""One TCM experiment (paper Sect. 3.1): data -> solutions -> paths -> straight lines -> HDF5.

The data are drawn in Python from the seed and handed to the chosen backend
(Julia or Python); everything the run needs to be redone is in the file's
``config`` attribute.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

from ramble.core.checkpoint import Checkpoint
from ramble.core.path import PathConfig, PathResult
from ramble.errors import ConfigError, DataError, FormatError, RambleError
from ramble.experiments.driver import PAIRINGS, run_experiment
from ramble.models.patterns import Patterns, random_patterns
from ramble.models.tcm import check_shape, gaussian_init
from ramble.models.tcm_backends import BACKENDS, TCMBackend, connect, make_backend
from ramble.models.tcm_training import TrainConfig, solve_with_restarts
from ramble.storage.checkpoint import CheckpointPolicy
from ramble.storage.io import Experiment, ExperimentWriter

log = logging.getLogger("ramble")


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


def run_tcm_experiment(
    cfg: TCMExperimentConfig,
    out: str | Path,
    force: bool = False,
    show_progress: bool = True,
    resume: bool = False,
    attrs: Optional[dict] = None,
    checkpoints: CheckpointPolicy = CheckpointPolicy(),
) -> Path:
    """Run the experiment with :func:`ramble.experiments.driver.run_experiment` and write ``out``; returns its path.

    ``resume=True`` continues an interrupted file of the same config;
    ``checkpoints``: when a running path commits its state (the Python
    backend; a Julia path is one call).  ``attrs``: extra root attributes
    of a new file (e.g. ``hessian_points``).
    """
    return run_experiment(TCMRun(cfg), out, force=force, resume=resume, show_progress=show_progress, checkpoints=checkpoints, attrs=attrs)


class TCMRun:
    """:class:`ramble.experiments.driver.ExperimentRun` of the TCM: patterns drawn from the seed, solutions and paths by the chosen backend."""

    model = "tcm"

    def __init__(self, cfg: TCMExperimentConfig) -> None:
        self.cfg = cfg
        self.patterns = random_patterns(cfg.n_inputs, cfg.n_patterns, cfg.seed)
        self.tcm: TCMBackend = make_backend(cfg.backend, self.patterns, cfg.n_hidden)
        self.backend = self.tcm.name
        self.config = cfg.to_dict()
        self.n_solutions = cfg.n_solutions
        self.pairs = cfg.pairs
        self.routes = cfg.path.variant == "repair"

    def write_data(self, writer: ExperimentWriter) -> None:
        writer.write_tcm_data(self.patterns.inputs, self.patterns.labels, self.cfg.seed)
        writer.set_attrs("model", tcm_model_attrs(self.cfg))

    def check_data(self, done: Experiment) -> None:
        """A resumed file must hold the very patterns the seed draws."""
        if not (np.array_equal(done.data.get("train_inputs"), self.patterns.inputs) and np.array_equal(done.data.get("train_labels"), self.patterns.labels)):
            raise FormatError(f"cannot resume {done.path}: its stored data set differs from the one seed {self.cfg.seed} draws")

    def weights_of(self, stored: np.ndarray) -> np.ndarray:
        return stored

    def train_solution(self, i: int) -> tuple[np.ndarray, dict]:
        """Solution ``i`` (N,): Gaussian starts of std init_scale / sqrt(N/K), restarts seeded by the seed and ``i``."""
        cfg = self.cfg
        scale = cfg.train.init_scale / np.sqrt(cfg.n_inputs // cfg.n_hidden)
        sol = solve_with_restarts(
            lambda w0: self.tcm.gd_solve(w0, cfg.train),
            lambda s: gaussian_init(cfg.n_inputs, scale, s),
            cfg.seed,
            i,
            cfg.train,
            log=log.info,
        )
        log.info("solution %d: %d attempt(s), %d epochs, %d kicks, min margin %.3g, %.1f s", i, sol.attempts, sol.epochs, sol.kicks, sol.min_margin, sol.seconds)
        return sol.w, {"init_seed": sol.seed, "attempts": sol.attempts, "epochs": sol.epochs, "kicks": sol.kicks, "polish_epochs": sol.polish_epochs, "min_margin": sol.min_margin, "seconds": sol.seconds}

    def connect(self, w_a: np.ndarray, w_b: np.ndarray, progress: Callable[[int, float], None], checkpoint: Optional[Checkpoint]) -> PathResult:
        return connect(self.tcm, w_a, w_b, self.cfg.path, self.cfg.train, progress, checkpoint)

    def straight_line(self, w_a: np.ndarray, w_b: np.ndarray) -> dict[str, np.ndarray]:
        return self.tcm.straight_line(w_a, w_b, self.cfg.linear_points)


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
            h = problem.row_fields(w)
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


def exact_polyline_certifier(f: Any) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``certify(rows)``: exact certificates of the segments between consecutive rows (R, P) (:meth:`ramble.models.tcm.TCMProblem.certify_polyline`) in float64."""
    import torch

    problem = stored_problem(f)

    def certify(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        certified, bound = problem.certify_polyline(torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float64)))
        return certified.numpy(), bound.numpy()

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

    def resume(self, path: Path, stored: Mapping[str, Any], show_progress: bool, checkpoints: CheckpointPolicy) -> None:
        run_tcm_experiment(stored_config(dict(stored)), path, show_progress=show_progress, resume=True, checkpoints=checkpoints)

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

        if not segments:
            return VerifySetup(counter=tcm_counter(f), all_rows=True, error_slack=0.5)
        return VerifySetup(counter=tcm_counter(f), certifier=exact_certifier(f), polyline_certifier=exact_polyline_certifier(f), all_rows=True, error_slack=0.5)

    def replayer(self, f: Any, *, data_dir: Optional[str], device: str) -> tuple[None, str]:
        return None, "TCM files store every vertex: the segments check certifies them exactly"

    def align_refusal(self, path: Any) -> Optional[str]:
        return tcm_refusal(path)

    def connect(self, problem: Any, w_a: Any, w_b: Any, cfg: Any, *, measure: Any, train_lr: float, max_epochs: int, progress: Any) -> Any:
        """Not for align (:meth:`align_refusal` refuses TCM files first); TCM paths are drawn by the run's backend (:func:`ramble.models.tcm_backends.connect`)."""
        raise RambleError("align draws no TCM paths: the tree committee machine has nothing to align (docs/align.md)")


SPEC = TCMSpec()
