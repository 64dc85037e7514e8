"""Continue an interrupted experiment file with the settings stored in it (``ramble resume FILE``).

The file's ``config`` attribute is the whole definition of the run, so a
resumed run needs nothing else: the config is rebuilt, the run is restarted
with ``resume=True`` (finished units are read back, a path's checkpoint is
continued), and the Hessian spectra the original command asked for (root
attribute ``hessian_points``) are added to the paths that lack them.
docs/resume.md says what is guaranteed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ramble.errors import FormatError
from ramble.storage.checkpoint import CheckpointPolicy
from ramble.storage.io import attrs_of, open_checked


def stored_run(path: str | Path) -> dict[str, Any]:
    """Root attributes of ``path`` with ``config`` parsed (FormatError if it is not a ramble file)."""
    with open_checked(path) as f:
        a = attrs_of(f)
    try:
        a["config"] = json.loads(a.get("config", ""))
    except json.JSONDecodeError:
        raise FormatError(f"{path}: its config attribute is not JSON; cannot resume") from None
    return a


def _tcm_config(d: dict) -> Any:
    from ramble.core.path import PathConfig
    from ramble.experiments.tcm_experiment import TCMExperimentConfig
    from ramble.models.tcm_training import TrainConfig

    return TCMExperimentConfig(**dict(d, train=TrainConfig(**d["train"]), path=PathConfig.from_dict(d["path"])))


def _mnist_config(d: dict) -> Any:
    from ramble.core.path import PathConfig
    from ramble.experiments.mnist_experiment import MnistExperimentConfig

    d = {k: v for k, v in d.items() if k != "resolved_device"}
    return MnistExperimentConfig(**dict(d, path=PathConfig.from_dict(d["path"])))


def resume(path: str | Path, show_progress: bool = True, checkpoints: CheckpointPolicy = CheckpointPolicy()) -> Path:
    """Finish the run stored in ``path``; returns its path.  A complete file only gets missing Hessians."""
    p = Path(path)
    a = stored_run(p)
    model = a.get("model")
    if model not in ("tcm", "lenet5"):  # every other model through its spec (ramble.models.registry)
        return _resume_by_spec(p, a, show_progress, checkpoints)
    try:
        cfg = _tcm_config(a["config"]) if model == "tcm" else _mnist_config(a["config"])
    except (KeyError, TypeError) as e:
        raise FormatError(f"{p}: its config cannot be read back by this ramble ({e}); cannot resume") from None
    if a.get("status") != "complete":
        if model == "tcm":
            from ramble.experiments.tcm_experiment import run_tcm_experiment

            run_tcm_experiment(cfg, p, show_progress=show_progress, resume=True)
        else:
            from ramble.experiments.mnist_experiment import run_mnist_experiment

            run_mnist_experiment(cfg, p, show_progress=show_progress, resume=True, checkpoints=checkpoints)
    add_missing_hessians(p, int(a.get("hessian_points", 0)), model, cfg)
    return p


def _resume_by_spec(p: Path, a: dict[str, Any], show_progress: bool, checkpoints: CheckpointPolicy) -> Path:
    """:func:`resume` for a model served by :mod:`ramble.models.registry`."""
    from ramble.analysis.spectra import HessianConfig, compute_and_store
    from ramble.models.registry import model_spec

    spec = model_spec(str(a.get("model")))
    if a.get("status") != "complete":
        spec.resume(p, a["config"], show_progress, checkpoints)
    points = int(a.get("hessian_points", 0))
    if points > 0:
        cfg = HessianConfig(points=points, subset=spec.hessian_subset(a["config"]))
        compute_and_store(p, cfg, device=str(a["config"].get("device", "auto")), missing_only=True)
    return p


def add_missing_hessians(path: Path, points: int, model: str, cfg: Any) -> list[str]:
    """Hessian spectra at ``points`` points of every path of ``path`` that has none yet."""
    if points <= 0:
        return []
    from ramble.analysis.spectra import HessianConfig, compute_and_store

    subset = None if model == "tcm" or cfg.train_size <= 1000 else 1000
    device = "auto" if model == "tcm" else cfg.device
    return compute_and_store(path, HessianConfig(points=points, subset=subset), device=device, missing_only=True)
