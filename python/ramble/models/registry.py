"""Which code serves each ``model`` a ramble file can name: one :class:`ModelSpec` per model.

Analyses (verify, convexity, curves, Hessians, plots, resume) look a file's
model up here instead of branching on its name.  A model is one file that
defines a spec object; it becomes known by one of:

* a module ``ramble/experiments/<name>_experiment.py`` with a ``SPEC`` (models
  shipped with ramble: the file is all it takes, :func:`shipped_specs`);
* :func:`register_model` (a script or notebook);
* an entry point in the group ``ramble.models`` of an installed package
  (``[project.entry-points."ramble.models"] mymodel = "mypkg.spec:SPEC"``).

docs/models.md walks through it.  The TCM and LeNet5 are still served by
their own branches in the analysis modules; they are to move here.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Protocol

import numpy as np

from ramble.errors import RambleError

ErrorCounter = Callable[[np.ndarray], np.ndarray]
"""Weights (R, P) -> training errors per row (R,) int."""


class ModelSpec(Protocol):
    """What the analyses need from a model (every method reads a file written by that model's run)."""

    name: str
    """The ``model`` root attribute of its files."""
    label: str
    """Human name for figures and reports."""

    def error_counter(self, path: str | Path, *, data_dir: Optional[str] = None, device: str = "cpu") -> tuple[ErrorCounter, int]:
        """Training errors per weight row and the number of training samples M (verify, convexity)."""
        ...

    def eq4_groups(self, model_info: Mapping[str, Any]) -> list[slice]:
        """The Eq. 4 groups recorded in ``/model`` (verify)."""
        ...

    def file_problem(self, e: Any, data_dir: Optional[str] = None, device: str = "auto") -> Any:
        """A :class:`ramble.analysis.curves.FileProblem`: the PathProblem, solutions and test measure (curves)."""
        ...

    def spectra(self, e: Any, rows: np.ndarray, cfg: Any, weights: Any, data_dir: Optional[str] = None, device: str = "auto") -> dict[str, Any]:
        """Hessian spectra at ``rows`` of ``weights`` (T, P), as :mod:`ramble.analysis.spectra` stores them."""
        ...

    def resume(self, path: Path, stored_config: Mapping[str, Any], show_progress: bool, checkpoints: Any) -> None:
        """Finish an interrupted file with the settings stored in it."""
        ...

    def hessian_subset(self, stored_config: Mapping[str, Any]) -> Optional[int]:
        """Training samples the run's own Hessians use (None: all)."""
        ...

    def data_label(self, e: Any) -> str:
        """A short description of the file's data for figure titles."""
        ...


SHIPPED_IN = "ramble.experiments"
"""The package whose modules ``<anything>_experiment.py`` define the specs shipped with ramble (as ``SPEC``)."""

_registered: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> None:
    """Make ``spec`` serve files whose ``model`` attribute is ``spec.name`` (in this process)."""
    _registered[spec.name] = spec


def shipped_specs() -> dict[str, ModelSpec]:
    """Model name -> the ``SPEC`` of each ``*_experiment`` module of :data:`SHIPPED_IN` that has one.

    A model shipped with ramble is one such file: dropping it in is all it
    takes for the analyses to find it (no list to edit).  Imports them all.
    """
    package = importlib.import_module(SHIPPED_IN)
    found: dict[str, ModelSpec] = {}
    for module in pkgutil.iter_modules(package.__path__):
        if module.name.endswith("_experiment"):
            spec = getattr(importlib.import_module(f"{SHIPPED_IN}.{module.name}"), "SPEC", None)
            if spec is not None:
                found[spec.name] = spec
    return found


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="ramble.models")}


def model_spec(name: str) -> ModelSpec:
    """The spec of model ``name``: registered, shipped (:func:`shipped_specs`) or an entry point; else RambleError naming the known models."""
    if name in _registered:
        return _registered[name]
    shipped = shipped_specs()
    if name in shipped:
        spec = shipped[name]
    else:
        eps = _entry_points()
        if name not in eps:
            known = sorted(set(shipped) | set(_registered) | set(eps) | {"tcm", "lenet5"})
            raise RambleError(f"unknown model {name!r}; this ramble knows: {', '.join(known)}")
        spec = eps[name].load()
    _registered[name] = spec
    return spec
