"""Your own PyTorch classifier: solutions, zero-error paths between them, and a ramble file.

The public API, for any ``nn.Module`` that maps a batch of inputs to (B, C)
logits (docs/models.md), exported by the package itself::

    from ramble import PathConfig, TorchClassifierProblem, train_solution, connect, run

    problem = TorchClassifierProblem(model, x_train, y_train)       # a PathProblem
    w_a, _ = train_solution(problem, seed=0)                         # flat weights (P,)
    w_b = problem.parameters_to_vector(other_trained_model)                   # or load one
    path = connect(problem, w_a, w_b, PathConfig(gamma=0.05))        # a PathResult
    run("model.py:build", x_train, y_train, "out.h5", test_inputs=x_test, test_labels=y_test)

:func:`run` writes the same file as ``ramble torch run`` (and ``ramble mnist
run`` for LeNet5): solutions, paths with test metrics, straight lines,
connectivity; ``ramble hessian/verify/convexity/curves/plot/resume`` work on
it.  The training set (and test set) are stored in the file; the model is
stored by reference: the factory's file and name, its source and the
source's sha256.  Code stored in a file is never run unless asked for with
``--run-stored-code`` (:func:`choose_model`): analyses rebuild the model from
the factory file the user gives again (``--model FILE.py:FACTORY``), checked
against the stored sha256.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import sys
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ramble.core.connect import connect
from ramble.core.path import MeasureFn, PathConfig, PathResult
from ramble.core.problem import row_error_counter
from ramble.errors import ConfigError, DataError, FormatError, RambleError
from ramble.experiments.driver import run_experiment
from ramble.experiments.network_run import NetworkRun, strided
from ramble.experiments.network_settings import check_network_run
from ramble.models.lenet import deterministic_cuda, resolve_device
from ramble.models.torch_classifier import GROUPINGS, GroupSpec, TorchClassifierProblem, check_classifier, train_solution
from ramble.storage.checkpoint import CheckpointPolicy
from ramble.storage.io import Experiment, ExperimentWriter, load

log = logging.getLogger("ramble")

MODEL = "torch"
"""The ``model`` root attribute of files written here."""

DTYPES = {"float32": torch.float32, "float64": torch.float64}

Measure = MeasureFn

__all__ = [
    "Factory",
    "TorchClassifierProblem",
    "TorchData",
    "TorchExperimentConfig",
    "choose_model",
    "connect",
    "load_npz",
    "problem_from_file",
    "run",
    "train_solution",
]


# ----------------------------------------------------------------------------- the model's factory


@dataclass(frozen=True)
class Factory:
    """A model factory by reference: a Python file, the name of a zero-argument callable in it, its source and sha256.

    Nothing runs until :meth:`build`.  ``file`` is absolute.
    """

    file: str
    name: str
    source: str
    sha256: str

    @classmethod
    def from_ref(cls, ref: str) -> "Factory":
        """``"FILE.py:NAME"`` -> Factory (the file is read, not run); ConfigError for a malformed or missing reference."""
        path, sep, name = str(ref).rpartition(":")
        if not sep or not path or not name.isidentifier():
            raise ConfigError(f"--model {ref!r}: expected FILE.py:FACTORY, e.g. my_model.py:build")
        p = Path(path).expanduser().resolve()
        if not p.is_file():
            raise ConfigError(f"--model {ref!r}: no file {p}")
        try:
            source = p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"--model {ref!r}: cannot read {p} ({e})") from None
        return cls(str(p), name, source, sha256_text(source))

    @classmethod
    def from_callable(cls, fn: Callable[[], nn.Module]) -> Optional["Factory"]:
        """The Factory of a module-level function defined in a readable file, or None (a lambda, a closure, the REPL)."""
        import inspect

        name = getattr(fn, "__name__", "")
        if not name.isidentifier() or getattr(fn, "__qualname__", name) != name:
            return None
        try:
            p = Path(inspect.getsourcefile(fn) or "").resolve()
            source = p.read_text()
        except (TypeError, OSError, UnicodeDecodeError):
            return None
        return cls(str(p), name, source, sha256_text(source))

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> "Factory":
        """The factory a file's ``/model`` recorded; FormatError when the stored source does not match its sha256."""
        try:
            f = cls(str(attrs["factory_file"]), str(attrs["factory_name"]), str(attrs["factory_source"]), str(attrs["factory_sha256"]))
        except KeyError as e:
            raise FormatError(f"the file records no model factory ({e.args[0]} missing): rebuild the model with the Python API") from None
        if sha256_text(f.source) != f.sha256:
            raise FormatError(f"the model code stored in the file was altered (its sha256 is not the recorded {f.sha256[:12]}...); refusing to run it")
        return f

    @property
    def ref(self) -> str:
        return f"{self.file}:{self.name}"

    def attrs(self) -> dict[str, str]:
        """What ``/model`` records about the factory."""
        return {"factory_file": self.file, "factory_name": self.name, "factory_source": self.source, "factory_sha256": self.sha256}

    def build(self) -> nn.Module:
        """Run the factory's file as a module and call the factory; ConfigError (one line) when that fails or gives no nn.Module."""
        module = _exec_file(Path(self.file), self.source, self.sha256)
        fn = getattr(module, self.name, None)
        if fn is None:
            names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            raise ConfigError(f"{self.file} defines no {self.name!r} (it has: {', '.join(names) or 'nothing callable'})")
        if not callable(fn):
            raise ConfigError(f"{self.file}: {self.name} is a {type(fn).__name__}, not a callable that returns an nn.Module")
        try:
            model = fn()
        except Exception as e:  # noqa: BLE001 - the user's code: any failure is reported in one line
            raise ConfigError(f"{self.ref}() failed: {type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
        if not isinstance(model, nn.Module):
            raise ConfigError(f"{self.ref}() returned a {type(model).__name__}, expected a torch.nn.Module")
        return check_classifier(model)


def sha256_text(text: str) -> str:
    """sha256 (hex) of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode()).hexdigest()


def _exec_file(path: Path, source: str, sha: str) -> Any:
    """Run ``source`` as the module ``path`` (its folder importable meanwhile); ConfigError when it raises."""
    name = f"ramble_user_model_{sha[:16]}"
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(path))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    module.__file__ = str(path)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    sys.path.insert(0, str(path.parent))
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - the user's own model file, by their request
    except Exception as e:  # noqa: BLE001 - the user's code: any failure is reported in one line
        sys.modules.pop(name, None)
        raise ConfigError(f"running {path} failed: {type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
    finally:
        sys.path.remove(str(path.parent))
    return module


# ----------------------------------------------------------------------------- which factory rebuilds a file's model


@dataclass
class ModelChoice:
    """How analyses get a stored file's model: a factory the user gives again, or (explicitly) the stored code."""

    ref: Optional[str] = None
    run_stored_code: bool = False


_choice = ModelChoice()


def choose_model(ref: Optional[str] = None, run_stored_code: bool = False) -> None:
    """Say how later analyses rebuild the model of a torch file (the CLI's ``--model``/``--run-stored-code``).

    ``ref``: ``"FILE.py:FACTORY"``, checked against the sha256 the file
    records.  ``run_stored_code``: run the source stored in the file
    (written to a temporary file first) instead; a file someone else wrote
    can run any code this way, so it is never the default.
    """
    global _choice
    _choice = ModelChoice(ref, bool(run_stored_code))


def chosen_model() -> ModelChoice:
    """What :func:`choose_model` was last told (the CLI sets ``--model`` and ``--run-stored-code`` one at a time)."""
    return _choice


def model_of_file(model_info: Mapping[str, Any], where: str = "the file") -> nn.Module:
    """The nn.Module of a torch file, rebuilt as :func:`choose_model` says; RambleError (one line) otherwise."""
    stored_sha = model_info.get("factory_sha256")
    if _choice.ref is not None:
        given = Factory.from_ref(_choice.ref)
        if stored_sha is not None and given.sha256 != stored_sha:
            raise RambleError(f"{given.file} (sha256 {given.sha256[:12]}...) is not the model file {where} was made with (sha256 {str(stored_sha)[:12]}...); give the same file, or pass --run-stored-code to run the stored copy")
        return given.build()
    if stored_sha is None:
        raise RambleError(f"{where} records no model source; give the model with --model FILE.py:FACTORY")
    stored = Factory.from_attrs(model_info)
    if not _choice.run_stored_code:
        raise RambleError(f"{where} was made by {stored.name} in {stored.file} (sha256 {stored.sha256[:12]}...); give it again with --model {stored.ref}, or pass --run-stored-code to run the copy stored in the file")
    with tempfile.TemporaryDirectory(prefix="ramble-stored-model-") as folder:
        copy = Path(folder) / Path(stored.file).name  # not the original folder: nothing beside it gets imported
        copy.write_text(stored.source)
        return replace(stored, file=str(copy)).build()


# ----------------------------------------------------------------------------- data


@dataclass
class TorchData:
    """A training set and an optional test set: inputs (M, ...) and integer labels (M,), as tensors."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: Optional[torch.Tensor] = None
    test_y: Optional[torch.Tensor] = None
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.train_x, self.train_y = _pair(self.train_x, self.train_y, "train")
        check_fittable(self.train_x, self.train_y)
        if (self.test_x is None) != (self.test_y is None):
            raise DataError("give both test_inputs and test_labels, or neither")
        if self.test_x is not None:
            self.test_x, self.test_y = _pair(self.test_x, self.test_y, "test")
            if tuple(self.test_x.shape[1:]) != tuple(self.train_x.shape[1:]):
                raise DataError(f"test_inputs have shape {tuple(self.test_x.shape[1:])} per sample, train_inputs {tuple(self.train_x.shape[1:])}")


def _pair(x: Any, y: Any, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    y = torch.as_tensor(np.asarray(y)) if not isinstance(y, torch.Tensor) else y
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"{part}_inputs must have shape (M, ...) with M >= 1 samples, got {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(f"{part}_labels must have shape ({x.shape[0]},) to match {part}_inputs, got {tuple(y.shape)}")
    if y.is_floating_point() and not bool((y == y.round()).all()):
        raise DataError(f"{part}_labels must be integer class indices, got non-integer values")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise DataError(f"{part}_inputs hold NaN or infinite values")
    return x, y.to(torch.int64)


def check_fittable(x: torch.Tensor, y: torch.Tensor) -> None:
    """DataError when two training samples have the same input but different labels: no classifier can fit both."""
    seen: dict[bytes, tuple[int, int]] = {}
    rows = x.reshape(len(x), -1).cpu().numpy()
    for i, (row, label) in enumerate(zip(rows, y.tolist())):
        first = seen.setdefault(row.tobytes(), (i, label))
        if first[1] != label:
            raise DataError(f"no classifier can fit the training set: samples {first[0]} and {i} have the same input but labels {first[1]} and {label}")


def load_npz(path: str | Path) -> TorchData:
    """Read ``train_inputs``, ``train_labels`` and optional ``test_inputs``, ``test_labels`` from an .npz file.

    Records the file and its sha256 in ``source``.  DataError (one line) when
    the file is missing or unreadable, a key is missing, or shapes disagree.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"--data {p}: no such file")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"--data {p} is not a readable .npz file of numeric arrays ({' '.join(str(e).split())[:120]})") from None
    missing = [k for k in ("train_inputs", "train_labels") if k not in arrays]
    if missing:
        raise DataError(f"--data {p} lacks {', '.join(missing)} (it has: {', '.join(sorted(arrays)) or 'nothing'})")
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    return TorchData(arrays["train_inputs"], arrays["train_labels"], arrays.get("test_inputs"), arrays.get("test_labels"), {"file": str(p.resolve()), "sha256": digest})


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TorchExperimentConfig:
    """Everything that defines a run besides the model and the data.

    ``points``/``weight_rows``: about how many points of each path get
    metrics and keep weights (as for LeNet5).  ``groups``: the Eq. 4 groups
    ("tensor", "module", "all" or lists of parameter names).  ``batch_size``
    and ``full_batch_max``: see :class:`TorchClassifierProblem`.
    """

    n_solutions: int = 2
    pairs: str = "all"
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    train_lr: float = 0.1
    max_epochs: int = 2000
    batch_size: int = 128
    full_batch_max: int = 1000
    polish_margin: float = 0.0
    points: int = 200
    weight_rows: int = 100
    linear_points: int = 101
    groups: Any = "tensor"
    path: PathConfig = field(default_factory=PathConfig)

    def __post_init__(self) -> None:
        check_network_run(self, extra_counts=("full_batch_max",))
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if isinstance(self.groups, str) and self.groups not in GROUPINGS:
            raise ConfigError(f"--groups must be one of {', '.join(GROUPINGS)}, got {self.groups!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TorchExperimentConfig":
        """Inverse of :meth:`to_dict` (a file's ``config`` attribute); unknown keys are ignored."""
        names = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in names}
        return cls(**dict(kw, path=PathConfig.from_dict(d["path"])))


# ----------------------------------------------------------------------------- a whole run -> a ramble file


ModelLike = Union[nn.Module, Callable[[], nn.Module], str, Factory]


def resolve_model(model: ModelLike) -> tuple[nn.Module, Optional[Factory]]:
    """An nn.Module and, when it can be recorded, its factory: from a module, a factory callable, ``"FILE.py:NAME"`` or a Factory."""
    if isinstance(model, str):
        model = Factory.from_ref(model)
    if isinstance(model, Factory):
        return model.build(), model
    if isinstance(model, nn.Module):
        return check_classifier(model), None
    if callable(model):
        factory = Factory.from_callable(model)
        built = model()
        if not isinstance(built, nn.Module):
            raise ConfigError(f"the model factory returned a {type(built).__name__}, expected a torch.nn.Module")
        return check_classifier(built), factory
    raise ConfigError(f"model must be an nn.Module, a factory or 'FILE.py:NAME', got {type(model).__name__}")


def model_attrs(problem: TorchClassifierProblem, factory: Optional[Factory]) -> dict[str, Any]:
    """``/model``: enough to rebuild the network and read any stored weight row."""
    out = {
        "name": factory.name if factory is not None else type(problem.model).__name__,
        "class": f"{type(problem.model).__module__}.{type(problem.model).__qualname__}",
        "definition": " ".join(repr(problem.model).split())[:4000],
        "param_names": json.dumps([n for n, _ in problem.spec]),
        "param_shapes": json.dumps([list(s) for _, s in problem.spec]),
        "groups": json.dumps([[g.start, g.stop] for g in problem.groups]),
        "flattening": "concatenation of model.named_parameters() in the order of param_names, each tensor in C order",
        "n_params": int(problem.n_params),
        "n_classes": int(problem.n_classes),
        "dtype": str(problem.dtype).replace("torch.", ""),
        "loss": "mean cross-entropy (nats); margin = logit[true] - max other logit; model run in eval() mode",
    }
    if factory is not None:
        out.update(factory.attrs())
    return out


def _as_data(train_inputs: Any, train_labels: Any, test_inputs: Any, test_labels: Any) -> TorchData:
    if isinstance(train_inputs, TorchData):
        return train_inputs
    return TorchData(train_inputs, train_labels, test_inputs, test_labels, {"file": "", "sha256": ""})


def run(
    model: ModelLike,
    train_inputs: Any,
    train_labels: Any,
    out: str | Path,
    *,
    test_inputs: Any = None,
    test_labels: Any = None,
    config: TorchExperimentConfig = TorchExperimentConfig(),
    solutions: Optional[Sequence[Any]] = None,
    force: bool = False,
    resume: bool = False,
    show_progress: bool = False,
    checkpoints: CheckpointPolicy = CheckpointPolicy(),
    attrs: Optional[dict] = None,
) -> Path:
    """Train (or take) solutions, connect the pairs, measure the straight lines; write ``out`` and return its path.

    ``model``: an nn.Module, a zero-argument factory, or ``"FILE.py:NAME"``
    (a factory in a file is recorded with its source and sha256, so
    ``ramble verify --model FILE.py:NAME`` can rebuild it).
    ``train_inputs`` may be a :class:`TorchData` (then ``train_labels`` is None).
    ``solutions``: weight vectors, trained modules or state dicts to use
    instead of training ``config.n_solutions`` new ones.  Each solution and
    each path is committed as it finishes; ``resume=True`` continues an
    interrupted file of the same config.
    """
    net, factory = resolve_model(model)
    data = _as_data(train_inputs, train_labels, test_inputs, test_labels)
    if solutions is not None:
        config = replace(config, n_solutions=len(solutions))
    return _run(config, net, factory, data, Path(out), solutions, force, resume, show_progress, checkpoints, attrs)


def build_problem(cfg: TorchExperimentConfig, net: nn.Module, data: TorchData) -> tuple[TorchClassifierProblem, Optional[Measure]]:
    """The training problem on the config's device and dtype, and the test-set measure (None without a test set)."""
    device = resolve_device(cfg.device)
    deterministic_cuda(device)
    groups: GroupSpec = cfg.groups if cfg.groups != "tensor" else None
    problem = TorchClassifierProblem(net, data.train_x, data.train_y, groups=groups, device=device, dtype=DTYPES[cfg.dtype], batch_size=cfg.batch_size, full_batch_max=cfg.full_batch_max)
    if data.test_x is None:
        return problem, None
    problem.check_labels(data.test_y.to(problem.device), "test labels")
    test_x, test_y = problem.input_tensor(data.test_x), data.test_y.to(problem.device)

    def measure(w: torch.Tensor) -> dict[str, float]:
        ev = problem.evaluate_on(w, test_x, test_y)
        return {"test_loss": ev.loss, "test_error": ev.error}

    return problem, measure


def _write_data(writer: ExperimentWriter, data: TorchData, problem: TorchClassifierProblem) -> None:
    parts = {"train": (data.train_x, data.train_y)}
    if data.test_x is not None:
        parts["test"] = (data.test_x, data.test_y)
    for part, (x, y) in parts.items():
        writer.write_arrays(f"data/{part}", {"inputs": x.cpu().numpy(), "labels": y.cpu().numpy()})
    writer.set_attrs("data", {"kind": "arrays", "source": data.source, "n_train": int(len(data.train_y)), "n_test": 0 if data.test_y is None else int(len(data.test_y)), "input_shape": list(data.train_x.shape[1:])})


def _run(cfg: TorchExperimentConfig, net: nn.Module, factory: Optional[Factory], data: TorchData, out: Path, given: Optional[Sequence[Any]], force: bool, resume: bool, show_progress: bool, checkpoints: CheckpointPolicy, attrs: Optional[dict]) -> Path:
    problem, measure = build_problem(cfg, net, data)
    path_cfg = strided(cfg.path, cfg.points, cfg.weight_rows)
    config = dict(cfg.to_dict(), path=path_cfg.to_dict(), resolved_device=str(problem.device), solutions_given=given is not None)

    def write_data(writer: ExperimentWriter) -> None:
        _write_data(writer, data, problem)
        writer.set_attrs("model", model_attrs(problem, factory))

    run_ = NetworkRun(MODEL, config, cfg, problem, measure, path_cfg, train_solution, write_data, show_progress, given)
    return run_experiment(run_, out, force=force, resume=resume, show_progress=show_progress, checkpoints=checkpoints, attrs=attrs)


# ----------------------------------------------------------------------------- reading a torch file back


def data_of(e: Experiment) -> TorchData:
    """The training (and test) set stored in a torch file."""
    if "train_inputs" not in e.data:
        raise DataError(f"{e.path} holds no training set (/data/train)")
    return TorchData(e.data["train_inputs"], e.data["train_labels"], e.data.get("test_inputs"), e.data.get("test_labels"), {})


def problem_from_file(e: Experiment, device: str = "auto", with_test: bool = True) -> tuple[TorchClassifierProblem, Optional[Measure]]:
    """The problem of a torch file: its stored data, its model rebuilt as :func:`choose_model` says, its groups.

    RambleError when the rebuilt model's parameters differ from the stored ones.
    """
    net = model_of_file(e.model_info, str(e.path))
    cfg = TorchExperimentConfig.from_dict(dict(e.config, device=device))
    data = data_of(e)
    if not with_test:
        data.test_x = data.test_y = None
    problem, measure = build_problem(replace(cfg, groups="tensor"), net, data)
    names = json.loads(e.model_info.get("param_names", "[]"))
    shapes = json.loads(e.model_info.get("param_shapes", "[]"))
    if names != [n for n, _ in problem.spec] or [tuple(s) for s in shapes] != [tuple(s) for _, s in problem.spec]:
        raise RambleError(f"{e.path}: the rebuilt model's parameters ({problem.n_params}) differ from the stored ones ({e.model_info.get('n_params')}); give the model the file was made with")
    problem.groups = stored_groups(e.model_info) or problem.groups
    return problem, measure


def stored_groups(model_info: Mapping[str, Any]) -> list[slice]:
    """The Eq. 4 groups a torch file records (``/model`` ``groups``: [[start, stop], ...])."""
    return [slice(int(a), int(b)) for a, b in json.loads(model_info.get("groups", "[]"))]


def config_of(stored: Mapping[str, Any]) -> TorchExperimentConfig:
    """The run config of a file's ``config`` attribute (record/weight strides as the user gave them are re-derived)."""
    return TorchExperimentConfig.from_dict(stored)


def resume_file(path: Path, stored_config: Mapping[str, Any], show_progress: bool, checkpoints: CheckpointPolicy) -> None:
    """Finish an interrupted torch file with the config, data and solutions stored in it."""
    e = load(path, weights=False)
    net = model_of_file(e.model_info, str(path))
    factory = Factory.from_attrs(e.model_info) if "factory_sha256" in e.model_info else None
    cfg = config_of(stored_config)  # its path config is strided already; striding again gives the same strides
    given = None
    if stored_config.get("solutions_given"):
        if len(e.solutions) < cfg.n_solutions:
            raise RambleError(f"cannot resume {path}: its solutions were given by the caller and only {len(e.solutions)} of {cfg.n_solutions} were stored; run it again")
        given = [e.solutions[i] for i in range(cfg.n_solutions)]
    _run(cfg, net, factory, data_of(e), path, given, False, True, show_progress, checkpoints, None)


# ----------------------------------------------------------------------------- the model spec (ramble.models.registry)


class TorchSpec:
    """The generic torch classifier as a :class:`ramble.models.registry.ModelSpec`: what the analyses need from a torch file."""

    name = MODEL
    label = "torch classifier"
    loss_label = "mean training loss, nats"
    exact_hessians = False

    def error_counter(self, path: str | Path, *, data_dir: Optional[str] = None, device: str = "cpu") -> tuple[Callable[[np.ndarray], np.ndarray], int]:
        """Training errors per weight row (R, P) -> (R,) int, and M; the model rebuilt as :func:`choose_model` says."""
        problem, _ = problem_from_file(load(path, weights=False), device, with_test=False)
        return row_error_counter(problem), problem.n_samples

    def eq4_groups(self, model_info: Mapping[str, Any]) -> list[slice]:
        return stored_groups(model_info)

    def file_problem(self, e: Experiment, data_dir: Optional[str] = None, device: str = "auto") -> Any:
        """The file's problem, solutions and test measure for :mod:`ramble.analysis.curves`."""
        from ramble.analysis.curves import FileProblem

        problem, measure = problem_from_file(e, device)
        sols = {i: torch.from_numpy(np.asarray(w)).to(device=problem.device, dtype=problem.dtype) for i, w in e.solutions.items()}
        return FileProblem(problem, sols, measure, "" if measure is not None else "the file holds no test set", str(problem.device), str(problem.dtype).replace("torch.", ""))

    def spectra(self, e: Experiment, rows: np.ndarray, cfg: Any, weights: Any, data_dir: Optional[str] = None, device: str = "auto", backend: Optional[str] = None,
                callback: Optional[Callable[[int], Any]] = None) -> dict[str, Any]:
        """Top-k Hessian eigenvalues (Lanczos) and Hutchinson traces at ``rows`` of a path's ``weights``, as for LeNet5; ``callback(j)`` after point j."""
        from ramble.analysis.hessian import along_path, classification_loss, set_threads_to_free_cores, subset_indices

        problem, _ = problem_from_file(e, device, with_test=False)
        if problem.device.type == "cpu":
            set_threads_to_free_cores(max_threads=torch.get_num_threads())
        idx = subset_indices(problem.n_samples, cfg.subset, cfg.subset_seed)
        x, y = problem.x[idx], problem.y[idx]

        def factory() -> Any:
            return classification_loss(problem.logits, x, y, chunk_size=1000 if len(idx) > 1000 else None)

        k = min(cfg.k, problem.n_params)
        tick = None if callback is None else (lambda j, _spec: callback(j))
        out = along_path(factory, weights, rows, k=k, which=cfg.which, tol=cfg.tol, trace_samples=cfg.trace_samples, seed=cfg.seed, dtype=problem.dtype, device=problem.device, callback=tick)
        out["attrs"] = dict(out["attrs"], subset_size=int(len(idx)), subset_seed=-1 if cfg.subset_seed is None else int(cfg.subset_seed), device=str(problem.device), train_size=problem.n_samples)
        return out

    def resume(self, path: Path, stored_config: Mapping[str, Any], show_progress: bool, checkpoints: CheckpointPolicy) -> None:
        resume_file(path, stored_config, show_progress, checkpoints)

    def hessian_subset(self, stored_config: Mapping[str, Any]) -> Optional[int]:
        """Training samples a run's own Hessians use (None: all; 1,000 above that, as for MNIST)."""
        return None

    def data_label(self, e: Experiment) -> str:
        """Follows the model's name in titles: "on 100 training samples"."""
        return f"on {e.data.get('n_train', '?')} training samples"

    def figure_name(self, e: Experiment) -> str:
        """The factory's name stored in ``/model``."""
        return str(e.model_info.get("name", e.model))

    def describe_data(self, e: Experiment) -> Optional[str]:
        return None  # the generic description of /data

    def hessian_device(self, stored_config: Mapping[str, Any]) -> str:
        return str(stored_config.get("device", "auto"))

    def verify_setup(self, f: Any, *, data_dir: Optional[str], device: str, segments: bool, max_pieces: int, any_complete: bool) -> Any:
        """The model rebuilt from the file (a ``model`` check when a path is complete); a sample of rows (slack 1.5 samples), segments bounded."""
        from ramble.core.bounds import network_certifier
        from ramble.models.registry import VerifySetup

        setup = VerifySetup(groups=self.eq4_groups(f.model_attrs()))
        if not (any_complete or segments):
            return setup
        problem, _ = problem_from_file(load(f.filename, weights=False), device, with_test=False)  # once, for the counter and the certifier
        if any_complete:
            setup.counter = row_error_counter(problem), problem.n_samples
            setup.checks.append(("model", True, f"{self.label} rebuilt, {problem.n_samples} training samples"))
        if segments:
            setup.certifier, setup.no_certifier = network_certifier(problem.model, problem.x, problem.y, max_pieces), ""
        return setup

    def replayer(self, f: Any, *, data_dir: Optional[str], device: str) -> tuple[Callable[[int, int], PathResult], str]:
        """:func:`connect` on the model and data rebuilt from the file, with the stored path config and training settings."""
        from ramble.analysis.verify import stored_path_config

        config = json.loads(f.attrs.get("config", "{}") or "{}")
        solutions = f.solutions()
        problem, _ = problem_from_file(load(f.filename, weights=False), device, with_test=False)
        cfg = config_of(config)
        path_cfg = stored_path_config(config)

        def replay(i: int, j: int) -> PathResult:
            w_a, w_b = (torch.from_numpy(solutions[k]).to(device=problem.device, dtype=problem.dtype) for k in (i, j))
            return connect(problem, w_a, w_b, path_cfg, train_lr=cfg.train_lr, max_epochs=cfg.max_epochs)

        return replay, ""

    def align_refusal(self, path: Any) -> Optional[str]:
        return None

    def connect(self, problem: Any, w_a: Any, w_b: Any, cfg: Any, *, measure: Any, train_lr: float, max_epochs: int, progress: Any) -> PathResult:
        """:func:`connect`, the run's own driver."""
        return connect(problem, w_a, w_b, cfg, measure=measure, progress=progress, train_lr=train_lr, max_epochs=max_epochs)


SPEC = TorchSpec()


# ----------------------------------------------------------------------------- ramble torch run


def run_cli(model_ref: Optional[str], data: Optional[str], options: Mapping[str, Any], path: PathConfig, out: str | Path, *, force: bool, resume: bool, show_progress: bool, checkpoints: CheckpointPolicy, hessian_points: int) -> Path:
    """``ramble torch run``: the factory and the .npz named on the command line, the run options, the path config."""
    if model_ref is None:
        raise ConfigError("give --model FILE.py:FACTORY (a function returning your nn.Module)")
    if data is None:
        raise ConfigError("give --data DATA.npz (train_inputs, train_labels, optionally test_inputs, test_labels)")
    factory = Factory.from_ref(model_ref)
    cfg = TorchExperimentConfig(**dict(options), path=path)
    return run(factory, load_npz(data), None, out, config=cfg, force=force, resume=resume, show_progress=show_progress, checkpoints=checkpoints, attrs={"hessian_points": hessian_points})
