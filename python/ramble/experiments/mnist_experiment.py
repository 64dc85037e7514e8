"""LeNet5 on MNIST (paper Sect. 3.2): data -> solutions -> paths -> test metrics -> HDF5.

The data are recorded by reference (folder, file checksums, which indices);
the parameter names, shapes and flattening order go into ``/model`` so that
any stored weight row rebuilds the network without this code.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

from ramble.core.connect import connect
from ramble.core.path import PathConfig, PathResult
from ramble.core.problem import flat_groups, row_error_counter
from ramble.errors import ConfigError, DataError, RambleError
from ramble.experiments.driver import run_experiment
from ramble.experiments.network_run import NetworkRun, strided, thin_weights
from ramble.experiments.network_settings import check_network_run
from ramble.models.lenet import LeNetProblem, deterministic_cuda, resolve_device, train_solution
from ramble.models.mnist import MnistData, load_mnist
from ramble.storage.checkpoint import CheckpointPolicy
from ramble.storage.io import ExperimentWriter

log = logging.getLogger("ramble")


def paper_path_config(train_size: int) -> PathConfig:
    """The paper's settings: gamma 0.001 for MNIST-100, 0.1 for the whole set; N_epochs 5; lr 0.1.

    Elastic halvings (not in the paper): a network pulled by a large gamma
    breaks many samples, and the segment to the repaired point then often
    leaves S, so certification refuses it; at half the pull it does not
    (measured on the MNIST fixture, gamma 0.1: a stall at 0.35 of the way
    without halvings, complete in 72 iterations with 6).

    Lazy chords (not in the paper): a network's segment certificate costs
    several GD epochs, so the moves of up to NETWORK_CHORD_ITERATIONS
    iterations are certified as one chord (``PathConfig.chord_iterations``).
    """
    return PathConfig(gamma=0.001 if train_size <= 1000 else 0.1, n_epochs=5, lr=0.1, elastic_halvings=NETWORK_ELASTIC_HALVINGS,
                      chord_iterations=NETWORK_CHORD_ITERATIONS)


NETWORK_ELASTIC_HALVINGS = 6
"""Halvings of a refused elastic step for networks (LeNet5, torch models); the TCM keeps 0."""

NETWORK_CHORD_ITERATIONS = 64
"""Longest certified chord for networks, in iterations (chosen on development seeds: benchmarks/README.md); the TCM keeps 1."""


@dataclass(frozen=True)
class MnistExperimentConfig:
    """Everything that defines a LeNet5/MNIST run.

    ``train_size``: the first n official training images (100 = MNIST-100).
    ``test_size``: the first k test images (None: all 10,000).
    ``points``: about how many points of each path get train and test
    metrics (sets the path's ``record_every`` from the expected iteration
    count ln(1/tol)/gamma); ``weight_rows``: about how many of them keep
    their weights (the rest only metrics).  ``batch_size``: SGD mini-batch
    when training on more than 1,000 images, also the path's "epoch" batch.
    """

    train_size: int = 100
    test_size: Optional[int] = None
    n_solutions: int = 2
    pairs: str = "all"
    seed: int = 0
    device: str = "auto"
    train_lr: float = 0.1
    max_epochs: int = 2000
    batch_size: int = 128
    polish_margin: float = 0.0
    points: int = 200
    weight_rows: int = 100
    linear_points: int = 101
    data_dir: Optional[str] = None
    download: bool = False
    path: PathConfig = field(default_factory=lambda: paper_path_config(100))

    def __post_init__(self) -> None:
        check_network_run(self)

    def to_dict(self) -> dict:
        return asdict(self)


def expected_iterations(cfg: PathConfig) -> float:
    """Iterations a path needs when every elastic step is taken (:meth:`PathConfig.expected_iterations`)."""
    return cfg.expected_iterations()


def model_attrs(problem: LeNetProblem) -> dict:
    names = [n for n, _ in problem.spec]
    shapes = [list(s) for _, s in problem.spec]
    return {
        "name": "LeNet5",
        "definition": "conv1 Conv2d(1,6,5,padding=2)-ReLU-MaxPool2d(2); conv2 Conv2d(6,16,5)-ReLU-MaxPool2d(2); "
        "flatten (C,H,W); fc1 Linear(400,120)-ReLU; fc2 Linear(120,84)-ReLU; fc3 Linear(84,10) logits",
        "param_names": json.dumps(names),
        "param_shapes": json.dumps(shapes),
        "flattening": "concatenation of model.named_parameters() in the order of param_names, each tensor in C order",
        "n_params": int(problem.n_params),
        "dtype": str(problem.dtype).replace("torch.", ""),
        "loss": "mean cross-entropy (nats); margin = logit[true] - max other logit",
        "input_normalisation": "(pixel/255 - 0.1307) / 0.3081",
    }


def run_mnist_experiment(
    cfg: MnistExperimentConfig,
    out: str | Path,
    force: bool = False,
    show_progress: bool = True,
    resume: bool = False,
    checkpoints: CheckpointPolicy = CheckpointPolicy(),
    attrs: Optional[dict] = None,
) -> Path:
    """Run the experiment with :func:`ramble.experiments.driver.run_experiment`, write ``out``, return its path.

    Each solution, and each path with its straight line, is committed as it
    finishes; a running path commits its state as ``checkpoints`` says
    (default every 60 s).  ``resume=True`` continues an interrupted file of
    the same config.  ``attrs``: extra root attributes of a new file (e.g.
    ``hessian_points``).
    """
    return run_experiment(mnist_run(cfg, show_progress), out, force=force, resume=resume, show_progress=show_progress, checkpoints=checkpoints, attrs=attrs)


def mnist_run(cfg: MnistExperimentConfig, show_progress: bool = False) -> NetworkRun:
    """The run of ``cfg``: the first ``train_size`` MNIST images on the resolved device, test metrics on the first ``test_size`` test images."""
    device = resolve_device(cfg.device)
    deterministic_cuda(device)
    data = load_mnist(cfg.data_dir, cfg.train_size, cfg.test_size, download=cfg.download)
    problem = LeNetProblem.from_data(data, device=device, batch_size=cfg.batch_size)
    test_x, test_y = data.test_x.to(device), data.test_y.to(device)
    path_cfg = strided(cfg.path, cfg.points, cfg.weight_rows)

    def measure(w: torch.Tensor) -> dict[str, float]:
        ev = problem.evaluate_on(w, test_x, test_y)
        return {"test_loss": ev.loss, "test_error": ev.error}

    def write_data(writer: ExperimentWriter) -> None:
        writer.set_attrs("data", {"kind": "mnist", "source": data.source, "train_indices": f"0:{cfg.train_size}", "test_indices": f"0:{len(data.test_y)}"})
        writer.set_attrs("model", model_attrs(problem))

    config = dict(cfg.to_dict(), path=path_cfg.to_dict(), resolved_device=str(device))
    return NetworkRun("lenet5", config, cfg, problem, measure, path_cfg, train_solution, write_data, show_progress)


def run_data(config: Mapping[str, Any], data_attrs: Mapping[str, Any], data_dir: Optional[str] = None, test: bool = False) -> MnistData:
    """The MNIST images a LeNet5 file was run on, from its ``config`` and ``/data`` attributes.

    Loaded from ``data_dir`` or the folder the file records, and checked
    against the sha256 the file records for each file; with ``test``, also the
    test images the run measured.  DataError (one line) when the file does
    not say which images, or they are missing or differ.
    """
    source = data_attrs.get("source")
    source = json.loads(source) if isinstance(source, str) else dict(source or {})
    try:
        train_size = int(config.get("train_size") or str(data_attrs.get("train_indices", "")).split(":")[1])
        test_size = int(str(data_attrs.get("test_indices", "")).split(":")[1]) if test else 1
    except (ValueError, IndexError, TypeError) as e:
        raise DataError(f"cannot tell which MNIST images the run used ({e})") from None
    folder = data_dir or source.get("folder")
    try:
        data = load_mnist(folder, train_size, test_size)
    except RambleError as e:
        raise DataError(f"MNIST data of the run not available: {e} (pass --data-dir)") from None
    want, have = source.get("files", {}), data.source.get("files", {})
    kinds = [k for k in want if test or k.startswith("train")]
    differ = sorted(k for k in kinds if want[k].get("sha256_gz") != have.get(k, {}).get("sha256_gz"))
    if differ:
        raise DataError(f"MNIST files in {folder} differ from the run's ({', '.join(differ)}: sha256 mismatch); pass the run's folder with --data-dir")
    return data


def rebuild(weights_row: np.ndarray, param_names: list[str], param_shapes: list[list[int]]) -> dict[str, torch.Tensor]:
    """Split a stored flat weight row into named tensors (the file's /model attributes say how)."""
    out = {}
    start = 0
    for name, shape in zip(param_names, param_shapes):
        n = int(np.prod(shape))
        out[name] = torch.from_numpy(np.ascontiguousarray(weights_row[start : start + n])).view(*shape)
        start += n
    if start != len(weights_row):
        raise ConfigError(f"weight row has {len(weights_row)} entries, the shapes need {start}")
    return out


# ----------------------------------------------------------------------------- LeNet5 as a ModelSpec

LENET_BATCH = 1000
"""Images per forward pass when verify counts a row's training errors."""


def stored_config(d: Mapping[str, Any]) -> MnistExperimentConfig:
    """The MnistExperimentConfig of a file's parsed ``config`` attribute (KeyError/TypeError when this ramble cannot read it back)."""
    d = {k: v for k, v in d.items() if k != "resolved_device"}
    return MnistExperimentConfig(**dict(d, path=PathConfig.from_dict(d["path"])))


def verify_data(f: Any, data_dir: Optional[str]) -> tuple[Optional[MnistData], tuple[str, bool, str]]:
    """The MNIST training images of an open LeNet5 file (None when missing or different) and verify's ``data`` check."""
    try:
        data = run_data(json.loads(f.attrs.get("config", "{}")), f.data_attrs(), data_dir)
    except DataError as e:
        return None, ("data", False, str(e))
    folder = data.source.get("folder", data_dir)
    return data, ("data", True, f"MNIST first {len(data.train_y)} training images from {folder}")


def forward_counter(f: Any, data: MnistData, device: str) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    """Verify's count: training errors per weight row (R, P) -> (R,), each row loaded into a LeNet5 of its dtype (batches of LENET_BATCH); and M."""
    from ramble.models.lenet import LeNet5

    names = json.loads(f.model_attrs()["param_names"])
    shapes = json.loads(f.model_attrs()["param_shapes"])
    dev = resolve_device(device)
    x = data.train_x.to(dev)
    y = data.train_y.to(dev)

    def count(weights: np.ndarray) -> np.ndarray:
        return np.asarray([_row_errors(LeNet5, np.asarray(row), names, shapes, x, y, dev) for row in weights], dtype=np.int64)

    return count, len(y)


def _row_errors(net_class: Any, row: np.ndarray, names: list[str], shapes: list[list[int]], x: torch.Tensor, y: torch.Tensor, dev: torch.device) -> int:
    """Training samples whose true logit does not exceed every other under the weights ``row`` (P,)."""
    net = net_class().to(dtype=torch.from_numpy(row[:1]).dtype)
    net.load_state_dict(rebuild(row, names, shapes))
    net.to(dev).eval()
    wrong = 0
    with torch.no_grad():
        for s in range(0, len(y), LENET_BATCH):
            logits = net(x[s : s + LENET_BATCH].to(next(net.parameters()).dtype))
            yb = y[s : s + LENET_BATCH]
            true = logits.gather(1, yb[:, None]).squeeze(1)
            other = logits.masked_fill(torch.nn.functional.one_hot(yb, logits.shape[1]).bool(), -float("inf")).amax(1)
            wrong += int((true - other <= 0).sum())
    return wrong


def _stored_dtype(model_info: Mapping[str, Any]) -> torch.dtype:
    """The dtype a LeNet5 file's run used (``/model`` ``dtype``: "float32", the default, or "float64")."""
    return torch.float64 if str(model_info.get("dtype", "float32")) == "float64" else torch.float32


class LeNetSpec:
    """LeNet5 on MNIST (paper Sect. 3.2) as a :class:`ramble.models.registry.ModelSpec`; the images are the MNIST files ``/data`` refers to (checked by sha256)."""

    name = "lenet5"
    label = "LeNet5"
    loss_label = "mean cross-entropy, nats"
    exact_hessians = False

    def error_counter(self, path: str | Path, *, data_dir: Optional[str] = None, device: str = "auto") -> tuple[Callable[[np.ndarray], np.ndarray], int]:
        """Training errors per weight row (R, P) -> (R,) by the LeNetProblem's margins, and M; DataError when the images are missing or differ."""
        from ramble.storage.views import open_stored

        with open_stored(path) as v:
            data = run_data(json.loads(v.attrs.get("config", "{}")), v.data_attrs(), data_dir)
            model = v.model_attrs()
        problem = LeNetProblem(data.train_x, data.train_y, device=resolve_device(device), dtype=_stored_dtype(model))
        n_params = int(model.get("n_params", problem.n_params))
        if n_params != problem.n_params:
            raise RambleError(f"the file's LeNet5 has {n_params} parameters, this ramble's {problem.n_params}")
        return row_error_counter(problem), problem.n_samples

    def eq4_groups(self, model_info: Mapping[str, Any]) -> list[slice]:
        """One group per parameter tensor (``/model`` ``param_shapes``)."""
        return flat_groups(json.loads(model_info["param_shapes"]))

    def file_problem(self, e: Any, data_dir: Optional[str] = None, device: str = "auto") -> Any:
        """The run's training problem in the file's dtype, the solutions, the test measure on the run's test slice; DataError naming the file."""
        from ramble.analysis.curves import FileProblem

        try:
            data = run_data(e.config, e.data, data_dir, test=True)
        except DataError as err:
            raise DataError(f"{e.path}: {err}") from None
        dev = resolve_device(device)
        dtype = _stored_dtype(e.model_info)
        prob = LeNetProblem.from_data(data, device=dev, dtype=dtype)
        test_x, test_y = data.test_x.to(dev), data.test_y.to(dev)

        def measure(w: torch.Tensor) -> dict[str, float]:
            ev = prob.evaluate_on(w, test_x, test_y)
            return {"test_loss": ev.loss, "test_error": ev.error}

        sols = {i: torch.from_numpy(np.asarray(w)).to(device=dev, dtype=dtype) for i, w in e.solutions.items()}
        return FileProblem(prob, sols, measure, "", str(dev), str(dtype).replace("torch.", ""), test_x=data.test_x)

    def spectra(self, e: Any, rows: np.ndarray, cfg: Any, weights: Any, data_dir: Optional[str] = None, device: str = "auto", backend: Optional[str] = None,
                callback: Optional[Callable[[int], Any]] = None) -> dict[str, Any]:
        """Top-k Lanczos eigenvalues and traces (:func:`ramble.analysis.spectra.lenet_spectra`) on the run's training images."""
        from ramble.analysis.spectra import lenet_spectra

        return lenet_spectra(rows, cfg, weights, run_data(e.config, e.data, data_dir), device=device, callback=callback)

    def resume(self, path: Path, stored: Mapping[str, Any], show_progress: bool, checkpoints: CheckpointPolicy) -> None:
        run_mnist_experiment(stored_config(stored), path, show_progress=show_progress, resume=True, checkpoints=checkpoints)

    def hessian_subset(self, stored: Mapping[str, Any]) -> Optional[int]:
        """All training images up to 1,000, else 1,000 of them."""
        return None if stored_config(stored).train_size <= 1000 else 1000

    def hessian_device(self, stored: Mapping[str, Any]) -> str:
        return stored_config(stored).device

    def data_label(self, e: Any) -> str:
        """"MNIST-100", "whole MNIST" or "MNIST, n training images"."""
        n = e.config.get("train_size")
        if n is None:
            return "MNIST"
        return "MNIST-100" if int(n) == 100 else ("whole MNIST" if int(n) >= 60000 else f"MNIST, {n} training images")

    def figure_name(self, e: Any) -> str:
        return "LeNet5"

    def describe_data(self, e: Any) -> Optional[str]:
        return None  # /data kind "mnist" says which images, from where

    def verify_setup(self, f: Any, *, data_dir: Optional[str], device: str, segments: bool, max_pieces: int, any_complete: bool) -> Any:
        """A ``data`` check; a sample of rows counted (slack 1.5 samples: one borderline image), segments bounded (:func:`ramble.core.bounds.network_certifier`)."""
        from ramble.core.bounds import network_certifier
        from ramble.models.lenet import LeNet5
        from ramble.models.registry import NO_SEGMENTS, VerifySetup

        data, check = verify_data(f, data_dir)
        setup = VerifySetup(groups=self.eq4_groups(f.model_attrs()), checks=[check], no_certifier=NO_SEGMENTS if not segments else "no training data", no_counter="no training data")
        if data is not None:
            setup.counter = forward_counter(f, data, device)
            if segments:
                dev = resolve_device(device)
                setup.certifier = network_certifier(LeNet5(), data.train_x.to(dev), data.train_y.to(dev), max_pieces)
        return setup

    def replayer(self, f: Any, *, data_dir: Optional[str], device: str) -> tuple[Callable[[int, int], PathResult], str]:
        """The run's pair driver (:func:`ramble.core.connect.connect`, rows thinned as stored) on ``device``; DataError when the images are missing."""
        from ramble.analysis.verify import stored_path_config

        config = json.loads(f.attrs.get("config", "{}") or "{}")
        solutions = f.solutions()
        data = run_data(config, f.data_attrs(), data_dir)
        dev = resolve_device(device)
        deterministic_cuda(dev)
        problem = LeNetProblem.from_data(data, device=dev, batch_size=int(config.get("batch_size", 128)))
        path_cfg = stored_path_config(config)

        def replay(i: int, j: int) -> PathResult:
            w_a, w_b = (torch.from_numpy(solutions[k]).to(device=dev, dtype=problem.dtype) for k in (i, j))
            result = connect(problem, w_a, w_b, path_cfg, train_lr=float(config["train_lr"]), max_epochs=int(config["max_epochs"]))
            return thin_weights(result, int(config["weight_rows"]))

        return replay, ""

    def align_refusal(self, path: Any) -> Optional[str]:
        return None

    def connect(self, problem: Any, w_a: Any, w_b: Any, cfg: Any, *, measure: Any, train_lr: float, max_epochs: int, progress: Any) -> PathResult:
        """:func:`ramble.core.connect.connect`, the run's own driver."""
        return connect(problem, w_a, w_b, cfg, measure=measure, progress=progress, train_lr=train_lr, max_epochs=max_epochs)


SPEC = LeNetSpec()
