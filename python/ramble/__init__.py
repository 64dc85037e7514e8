"""ramble: zero-error paths between two solutions of one classification problem.

After Tartaglione & Grangetto, "Take a Ramble into Solution Spaces for
Classification Problems in Neural Networks" (ICIAP 2019).

The public API, for any PyTorch classifier (docs/models.md)::

    import ramble

    problem = ramble.TorchClassifierProblem(model, x_train, y_train)   # the training set as a PathProblem
    w_a, _ = ramble.train_solution(problem, seed=0)                    # flat weights (P,) inside S
    w_b, _ = ramble.train_solution(problem, seed=1)
    path = ramble.connect(problem, w_a, w_b, ramble.PathConfig(gamma=0.05))  # a PathResult, every segment certified
    ramble.run("model.py:build", x_train, y_train, "out.h5")           # the whole experiment, as `ramble torch run`
    e = ramble.load("out.h5")                                           # any ramble file

The names are imported on first use, so ``import ramble`` stays cheap (the
CLI starts without loading torch).  The package's layout: :mod:`ramble.core`
(the path algorithm), :mod:`ramble.models`, :mod:`ramble.julia` (the bridge),
:mod:`ramble.storage` (the HDF5 format), :mod:`ramble.analysis`,
:mod:`ramble.experiments`, :mod:`ramble.reporting`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_API = {
    "PathConfig": "ramble.core.path",
    "PathResult": "ramble.core.path",
    "find_path": "ramble.core.path",
    "PathProblem": "ramble.core.problem",
    "TorchClassifierProblem": "ramble.models.torch_classifier",
    "train_solution": "ramble.models.torch_classifier",
    "connect": "ramble.core.connect",
    "run": "ramble.experiments.torch_experiment",
    "TorchExperimentConfig": "ramble.experiments.torch_experiment",
    "load": "ramble.storage.io",
    "Experiment": "ramble.storage.io",
    "verify_file": "ramble.analysis.verify",
    "RambleError": "ramble.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'ramble' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
