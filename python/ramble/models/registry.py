"""Which code serves each ``model`` a ramble file can name: one :class:`ModelSpec` per model.

Analyses (verify, convexity, curves, Hessians, plots, resume) look a file's
model up here instead of branching on its name.  A model is one file that
defines a spec object; it becomes known by one of:

* a module ``ramble/experiments/<name>_experiment.py`` with a ``SPEC`` (models
  shipped with ramble: the file is all it takes, :func:`shipped_specs`);
* :func:`register_model` (a script or notebook);
* an entry point in the group ``ramble.models`` of an installed package
  (``[project.entry-points."ramble.models"] mymodel = "mypkg.spec:SPEC"``).

docs/models.md walks through it.  The TCM (``tcm_experiment.py``), LeNet5
(``mnist_experiment.py``) and the generic torch classifier
(``torch_experiment.py``) are served this way too; the analyses hold no
branch on a model's name.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Protocol

import numpy as np

from ramble.errors import RambleError

ErrorCounter = Callable[[np.ndarray], np.ndarray]
"""Weights (R, P) -> training errors per row (R,) int."""

SegmentCertifier = Callable[[np.ndarray, np.ndarray, bool], Any]
"""``certify(row0, row1, chord)``: the :class:`ramble.core.problem.SegmentCertificate` of the straight segment between two stored weight rows (P,).

``chord``: the rows are not consecutive vertices, so a smaller work limit applies (networks)."""

PolylineCertifier = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``certify(rows)``: exact certificates of the segments between consecutive stored weight rows (R, P) of one polyline.

Returns ``certified`` bool (R - 1,) and ``margin_bound`` float64 (R - 1,),
segment r joining rows r and r + 1: the decisions and bounds a
:data:`SegmentCertifier` would give segment by segment (up to the rounding
of the fields), computed in one pass."""

Replayer = Callable[[int, int], Any]
"""``replay(i, j)``: the PathResult the run's driver draws from solution i to solution j, as the file stores it."""

NO_SEGMENTS = "segments not checked (--no-segments)"


@dataclass
class VerifySetup:
    """What ``ramble verify`` checks a model's file with (:meth:`ModelSpec.verify_setup`).

    ``checks``: (name, ok, detail) added to the report before the paths
    (e.g. whether the run's data were found).  ``counter``: training errors
    per row and M, None when the data are missing.  ``certifier``: None when
    segments are not certified, ``no_certifier`` then says why.
    ``polyline_certifier``: certifies a path's stored segments in batches,
    used instead of ``certifier`` when given (the TCM).  ``groups``:
    the Eq. 4 groups (None: one group of all P weights).  ``all_rows``: the
    membership check recomputes every stored row (else a sample).
    ``error_slack``: largest |stored train_error * M - recomputed count| in
    samples that still matches.  ``no_counter``: why membership is skipped
    when ``counter`` is None.
    """

    counter: Optional[tuple[ErrorCounter, int]] = None
    certifier: Optional[SegmentCertifier] = None
    polyline_certifier: Optional[PolylineCertifier] = None
    groups: Optional[list[slice]] = None
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    no_certifier: str = NO_SEGMENTS
    no_counter: str = "no training set"
    all_rows: bool = False
    error_slack: float = 1.5


class ModelSpec(Protocol):
    """What the analyses need from a model (every method reads a file written by that model's run)."""

    name: str
    """The ``model`` root attribute of its files."""
    label: str
    """Human name for figures and reports."""

    def error_counter(self, path: str | Path, *, data_dir: Optional[str] = None, device: str = "cpu") -> tuple[ErrorCounter, int]:
        """Training errors per weight row, weights (R, P) -> (R,) int, and the number of training samples M (convexity; verify through :meth:`verify_setup`)."""
        ...

    def eq4_groups(self, model_info: Mapping[str, Any]) -> list[slice]:
        """The Eq. 4 groups recorded in ``/model`` (verify)."""
        ...

    def file_problem(self, e: Any, data_dir: Optional[str] = None, device: str = "auto") -> Any:
        """A :class:`ramble.analysis.curves.FileProblem`: the PathProblem, solutions and test measure (curves)."""
        ...

    def spectra(self, e: Any, rows: np.ndarray, cfg: Any, weights: Any, data_dir: Optional[str] = None, device: str = "auto", backend: Optional[str] = None,
                callback: Optional[Callable[[int], Any]] = None) -> dict[str, Any]:
        """Hessian spectra at ``rows`` of ``weights`` (T, P), as :mod:`ramble.analysis.spectra` stores them; ``callback(j)`` after point j.

        ``backend``: the TCM backend to use instead of the file's (other models ignore it).
        """
        ...

    def resume(self, path: Path, stored_config: Mapping[str, Any], show_progress: bool, checkpoints: Any) -> None:
        """Finish an interrupted file with the settings stored in it."""
        ...

    def hessian_subset(self, stored_config: Mapping[str, Any]) -> Optional[int]:
        """Training samples the run's own Hessians use (None: all); KeyError/TypeError when this ramble cannot read ``stored_config`` back."""
        ...

    def data_label(self, e: Any) -> str:
        """A short description of the file's data for figure titles."""
        ...

    loss_label: str
    """The training loss in words for figure axes, with its unit ("mean cross-entropy, nats")."""
    exact_hessians: bool
    """True: the stored Hessians are full spectra (P eigenvalues a point, exact); False: top-k Lanczos estimates."""

    def figure_name(self, e: Any) -> str:
        """The network's name leading figure and report titles ("TCM", "LeNet5", a factory's name)."""
        ...

    def describe_data(self, e: Any) -> Optional[str]:
        """The file's data in words for ``ramble info``; None: the generic description from ``/data``."""
        ...

    def hessian_device(self, stored_config: Mapping[str, Any]) -> str:
        """The device ``ramble resume`` computes a finished run's missing Hessians on ("auto", "cpu", "cuda")."""
        ...

    def verify_setup(self, f: Any, *, data_dir: Optional[str], device: str, segments: bool, max_pieces: int, any_complete: bool) -> VerifySetup:
        """What ``ramble verify`` checks the open file ``f`` (a :class:`ramble.storage.views.StoredFile`) with.

        ``segments``: certify stored segments (networks: at most ``max_pieces``
        bounded pieces a chord).  ``any_complete``: some path is complete (a
        counter is needed).  RambleError: the model cannot be rebuilt (a
        failed ``model`` check; verify stops there).
        """
        ...

    def replayer(self, f: Any, *, data_dir: Optional[str], device: str) -> tuple[Optional[Replayer], str]:
        """The run's path driver on the file's problem and solutions (``verify --replay``), or (None, why there is no replay).

        RambleError (e.g. missing data): a failed ``replay`` check.
        """
        ...

    def align_refusal(self, path: Any) -> Optional[str]:
        """Why ``ramble align`` cannot align this model's files (one line), or None when it can."""
        ...

    def connect(self, problem: Any, w_a: Any, w_b: Any, cfg: Any, *, measure: Any, train_lr: float, max_epochs: int, progress: Any) -> Any:
        """The run's own pair driver: a PathResult from ``w_a`` to ``w_b`` (P,) on ``problem`` with PathConfig ``cfg`` (``ramble align``)."""
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
            known = sorted(set(shipped) | set(_registered) | set(eps))
            raise RambleError(f"unknown model {name!r}; this ramble knows: {', '.join(known)}")
        spec = eps[name].load()
    _registered[name] = spec
    return spec
