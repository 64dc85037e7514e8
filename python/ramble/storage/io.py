"""The ramble HDF5 format (version 1): writing and loading experiment files.

One file holds one experiment: a data set, its solutions, the paths between
pairs of solutions, and measurements along them.  ``docs/format.md`` is the
full description; this module is its reference implementation.  Analysis code
uses :func:`load`, which returns plain NumPy arrays in small dataclasses.

A file is trustworthy only when its root attribute ``status`` is
``"complete"``; a run writes ``"running"`` first and ``"failed"`` (with
``error``) if it stops on an error, so a partial file is never passed off as
complete.  Every change to a file is an all-or-nothing commit
(:func:`update`): a run killed at any moment leaves the last committed
state, which ``--resume`` continues (docs/resume.md).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Optional

import h5py
import numpy as np

from ramble import __version__
from ramble.errors import FormatError, Interrupted, RambleError
from ramble.storage import faults

if TYPE_CHECKING:
    from ramble.core.path import PathResult

FORMAT = "ramble"
FORMAT_VERSION = 1
MODEL_NAME = re.compile(r"[a-z][a-z0-9_]*")
"""What a ``model`` attribute may be: the name of a model's spec (:func:`ramble.models.registry.model_spec`), e.g. "tcm", "lenet5", "torch"."""
STATUSES = ("running", "complete", "failed")


def pair_name(i: int, j: int) -> str:
    """Group name of the path from solution ``i`` to solution ``j``."""
    return f"{i}-{j}"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------- writing
class ExperimentWriter:
    """Writes one experiment file, one all-or-nothing commit at a time; use as a context manager.

    The file on disk is only ever replaced whole by :func:`update` (copy,
    change, fsync, atomic rename), so a run killed at any moment leaves the
    last committed state: a file that opens, says ``status="running"`` and can
    be resumed.  Group related writes with :meth:`commit` (a finished path and
    its straight line land together); a write outside such a block is its own
    commit.  On creation the file holds only the root attributes.  An
    exception inside the ``with`` block marks the file ``"failed"`` with the
    message (itself a commit, skipped if the disk is full) and re-raises;
    :class:`ramble.errors.Interrupted` (a path stopped by a signal after
    committing its state) leaves it ``"running"``, to be resumed.

    ``force``: overwrite an existing file.  ``resume``: continue an existing
    ``running`` or ``failed`` file of the same model, backend and config.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        model: str,
        backend: str,
        config: Mapping[str, Any],
        force: bool = False,
        resume: bool = False,
        attrs: Optional[Mapping[str, Any]] = None,
    ) -> None:
        if not MODEL_NAME.fullmatch(str(model)):
            raise RambleError(f"model must be a spec's name (lower-case letters, digits and _, e.g. 'tcm'), got {model!r}")
        if force and resume:
            raise RambleError("--force and --resume exclude each other: overwrite the file or continue it, not both")
        self.path = Path(path)
        self.f: Optional[h5py.File] = None
        config_json = json.dumps(dict(config), sort_keys=True)
        if resume:
            self._check_resumable(model, backend, config_json)
            with self.commit():
                a = self.f.attrs  # type: ignore[union-attr]
                a["status"] = "running"
                a["resumes"] = int(a.get("resumes", 0)) + 1
                if "error" in a:
                    del a["error"]
            return
        if self.path.exists() and not force:
            raise RambleError(f"output file {self.path} exists; pass --force to overwrite it or --resume to continue it")
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if not parent.is_dir():
            raise RambleError(f"output folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise RambleError(f"output folder {parent} is not writable")
        with h5py.File(self.path.name, "w", driver="core", backing_store=False) as f:
            a = f.attrs
            a["format"] = FORMAT
            a["format_version"] = FORMAT_VERSION
            a["model"] = model
            a["backend"] = backend
            a["config"] = config_json
            a["status"] = "running"
            a["ramble_version"] = __version__
            a["created"] = _now()
            torch_module = sys.modules.get("torch")  # not imported here: io stays light; a torch run has it loaded
            if torch_module is not None:
                a["torch_threads"] = int(torch_module.get_num_threads())  # float32 CPU results depend on it (verify --replay)
            for k, v in (attrs or {}).items():
                a[k] = encode_attr(v)
            f.flush()
            image = f.id.get_file_image()
        write_atomically(self.path, image)

    def _check_resumable(self, model: str, backend: str, config_json: str) -> None:
        with open_checked(self.path) as f:
            a = attrs_of(f)
        status = a.get("status")
        if status == "complete":
            raise RambleError(f"{self.path} is complete already; nothing to resume")
        if status not in ("running", "failed"):
            raise RambleError(f"{self.path} has status {status!r}; only 'running' or 'failed' files can be resumed")
        for what, want in (("model", model), ("backend", backend)):
            if a.get(what) != want:
                raise RambleError(f"cannot resume {self.path}: it was written by the {a.get(what)!r} {what}, this run uses {want!r}")
        if json.loads(a.get("config", "{}")) != json.loads(config_json):
            raise RambleError(f"cannot resume {self.path}: its config differs from this run's; resume with the file's own settings (ramble resume FILE)")

    def __enter__(self) -> "ExperimentWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None or isinstance(exc, Interrupted):  # stopped by a signal: its state is committed, the file stays "running"
            return
        try:
            with self.commit():
                self.f.attrs["status"] = "failed"  # type: ignore[union-attr]
                self.f.attrs["error"] = f"{exc_type.__name__}: {exc}"  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - a full disk must not hide the original error
            pass

    @contextmanager
    def commit(self) -> Iterator["ExperimentWriter"]:
        """Make the writes inside the block one all-or-nothing commit (nested blocks join the outer one)."""
        if self.f is not None:
            yield self
            return
        with update(self.path, check=False) as f:
            self.f = f
            try:
                yield self
            finally:
                self.f = None

    # -- reading back what is committed (for resuming) ------------------
    def read(self) -> "Experiment":
        """The committed content, loaded (weights included)."""
        return load(self.path)

    # -- content -------------------------------------------------------
    def set_attrs(self, group: str, attrs: Mapping[str, Any]) -> None:
        with self.commit():
            g = self.f.require_group(group)  # type: ignore[union-attr]
            for k, v in attrs.items():
                g.attrs[k] = encode_attr(v)

    def write_tcm_data(self, inputs: np.ndarray, labels: np.ndarray, seed: int) -> None:
        """``/data/train/inputs`` (M, N) int8 and ``labels`` (M,) int8, values +-1."""
        with self.commit():
            f = self.f
            g = f.require_group("data/train")  # type: ignore[union-attr]
            g.create_dataset("inputs", data=np.asarray(inputs, dtype=np.int8), compression="gzip")
            g.create_dataset("labels", data=np.asarray(labels, dtype=np.int8))
            f["data"].attrs["kind"] = "random_pm1"  # type: ignore[index]
            f["data"].attrs["seed"] = int(seed)  # type: ignore[index]

    def write_solution(self, index: int, w: np.ndarray, attrs: Mapping[str, Any]) -> None:
        """``/solutions/<index>``: flat float64 weights with how they were found."""
        with self.commit():
            g = self.f.require_group("solutions")  # type: ignore[union-attr]
            name = str(index)
            if name in g:
                del g[name]
            d = g.create_dataset(name, data=np.asarray(w, dtype=np.float64))
            for k, v in attrs.items():
                d.attrs[k] = encode_attr(v)

    def write_path(self, i: int, j: int, result: Any, extra: Optional[Mapping[str, np.ndarray]] = None) -> None:
        """``/paths/<i>-<j>``: a :class:`ramble.core.path.PathResult` and optional extra per-point datasets.

        Also drops the path's mid-run checkpoint, in the same commit.
        """
        with self.commit():
            f = self.f
            g = f.require_group("paths")  # type: ignore[union-attr]
            name = pair_name(i, j)
            if name in g:
                del g[name]
            p = g.create_group(name)
            p.attrs["from"] = int(i)
            p.attrs["to"] = int(j)
            p.attrs["status"] = result.status
            p.attrs["reason"] = result.reason
            for k in ("iterations", "elastic_accepted", "elastic_repaired", "elastic_refused", "gd_accepted", "gd_refused_total", "segment_checks"):
                p.attrs[k] = int(getattr(result, k))
            p.attrs["wall_time"] = float(result.wall_time)
            for k in ("segments_certified", "cert_pieces"):
                p.attrs[k] = int(getattr(result, k, 0))
            for k in ("cert_min_margin", "cert_seconds"):
                p.attrs[k] = float(getattr(result, k, float("nan")))
            p.attrs["waypoints"] = len(getattr(result, "waypoints", []))
            p.attrs["waypoints_trained"] = int(getattr(result, "waypoints_trained", 0))
            p.attrs["escape_scale"] = float(getattr(result, "escape_scale", 1.0))
            p.attrs["via"] = np.asarray(getattr(result, "via", []), dtype=np.int64)
            if getattr(result, "waypoints", None):
                p.attrs["waypoint_iterations"] = np.asarray(result.waypoints, dtype=np.int64)
            p.attrs["path_config"] = json.dumps(result.config, sort_keys=True)
            p.create_dataset("weights", data=result.weights, chunks=True, compression="gzip", shuffle=True)
            p.create_dataset("iteration", data=result.iteration)
            p.create_dataset("distance", data=result.distance)
            p.create_dataset("train_loss", data=result.train_loss)
            p.create_dataset("train_error", data=result.train_error)
            p.create_dataset("decisions", data=result.decisions, compression="gzip")
            p.create_dataset("gd_refused", data=result.gd_refused, compression="gzip")
            weight_index = getattr(result, "weight_index", None)
            if weight_index is not None:
                p.create_dataset("weight_index", data=np.asarray(weight_index, dtype=np.int64))
            if getattr(result, "arclength", None) is not None:
                p.create_dataset("arclength", data=np.asarray(result.arclength, dtype=np.float64))
            for k, v in {**getattr(result, "extra", {}), **(extra or {})}.items():
                p.create_dataset(k, data=np.asarray(v))
            p.attrs["sha256"] = datasets_sha256(p)
            self._drop_checkpoint(name)

    def write_arrays(self, group: str, arrays: Mapping[str, np.ndarray], attrs: Optional[Mapping[str, Any]] = None) -> None:
        """Write (replacing) datasets under ``group``, e.g. ``paths/0-1/linear``."""
        with self.commit():
            g = self.f.require_group(group)  # type: ignore[union-attr]
            for k, v in arrays.items():
                if k in g:
                    del g[k]
                g.create_dataset(k, data=np.asarray(v))
            for k, v in (attrs or {}).items():
                g.attrs[k] = encode_attr(v)

    # -- mid-unit checkpoints ----------------------------------------------
    def save_checkpoint(self, unit: str, state: np.ndarray, attrs: Mapping[str, Any], progress: Optional[Mapping[str, np.ndarray]] = None) -> None:
        """Commit ``/checkpoints/<unit>``: ``state`` (uint8 bytes of a serialised state), ``attrs``, and ``progress``.

        ``progress``: the running leg's recorded points so far, one (T,) array
        per name, kept in chunked, resizable datasets ``progress/<name>`` that
        grow by the new rows at each checkpoint (rewritten from the first
        changed row when a new leg starts), so a running path can be watched
        with any HDF5 reader.
        """
        with self.commit():
            g = self.f.require_group(f"checkpoints/{unit}")  # type: ignore[union-attr]
            if "state" in g:
                del g["state"]
            g.create_dataset("state", data=np.asarray(state, dtype=np.uint8))
            g.attrs["saved"] = _now()
            for k, v in attrs.items():
                g.attrs[k] = encode_attr(v)
            pg = g.require_group("progress")
            for name, values in (progress or {}).items():
                v = np.asarray(values)
                d = pg.get(name)
                if d is None or d.dtype != v.dtype:
                    if d is not None:
                        del pg[name]
                    d = pg.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(1024,), dtype=v.dtype)
                old = d.shape[0]
                start = old if old <= len(v) and np.array_equal(d[:old], v[:old]) else 0
                d.resize((len(v),))
                d[start:] = v[start:]

    def load_checkpoint(self, unit: str) -> Optional[np.ndarray]:
        """The committed state bytes of ``unit``, or None."""
        with open_checked(self.path) as f:
            d = f.get(f"checkpoints/{unit}/state")
            return None if d is None else d[()]

    def _drop_checkpoint(self, unit: str) -> None:
        g = self.f.get("checkpoints")  # type: ignore[union-attr]
        if g is not None and unit in g:
            del g[unit]
            if len(g) == 0:
                del self.f["checkpoints"]  # type: ignore[union-attr]

    def finish(self, status: str, **attrs: Any) -> None:
        if status not in STATUSES:
            raise ValueError(status)
        with self.commit():
            a = self.f.attrs  # type: ignore[union-attr]
            for k, v in attrs.items():
                a[k] = encode_attr(v)
            a["finished"] = _now()
            a["status"] = status


def datasets_sha256(group: h5py.Group) -> str:
    """SHA-256 (hex) of the datasets directly in ``group``; subgroups (``linear/``, ``hessian/``) are not covered.

    Datasets in sorted name order; for each, ``name``, the NumPy dtype string
    (e.g. ``<f8``), the shape (comma-separated) each followed by a NUL byte,
    then the raw C-order bytes of the data.  Stored as a path's ``sha256``
    attribute; ``ramble verify`` recomputes it (docs/verify.md).
    """
    import hashlib

    h = hashlib.sha256()
    for name in sorted(k for k in group if isinstance(group[k], h5py.Dataset)):
        a = np.ascontiguousarray(group[name][()])
        h.update(f"{name}\0{a.dtype.str}\0{','.join(str(n) for n in a.shape)}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def encode_attr(v: Any) -> Any:
    """An attribute value as the format stores it: containers as sorted-key JSON (a non-empty list or tuple of numbers stays an array), None as ``"null"``.

    The one encoder of attributes that callers hand in (settings, summaries), so a value reads back the same whichever command stored it.
    """
    if isinstance(v, (dict, list, tuple)) and not (isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) for x in v)):
        return json.dumps(v, sort_keys=True)
    if v is None:
        return "null"
    return v


def make_folder(folder: Path, what: str) -> Path:
    """Create ``folder`` (and parents) for output; RambleError naming it (as ``what``) if that fails or it is not writable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RambleError(f"cannot create {what} {folder}: {e.strerror or e}") from None
    if not os.access(folder, os.W_OK):
        raise RambleError(f"{what} {folder} is not writable")
    return folder


# ------------------------------------------------------------ atomic updates
def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def staging_path(path: str | os.PathLike) -> Path:
    """Where a commit to ``path`` is prepared (same folder, so the final rename is atomic)."""
    p = Path(path)
    return p.with_name(f".{p.name}.commit")


@contextmanager
def update(path: str | os.PathLike, check: bool = True) -> Iterator[h5py.File]:
    """Change an existing ramble file all-or-nothing: yields it open for writing.

    The file is opened in memory (HDF5's "core" driver, nothing written back),
    changed there, and its image is written to a copy beside it
    (``.<name>.commit``) with plain file writes, fsynced, and renamed over
    ``path``.  A kill or a failed write (a full disk) at any moment leaves
    ``path`` exactly as it was: the rename is atomic on POSIX file systems.
    Why in memory: HDF5 itself crashes the process when its own writes fail
    (h5py 3.16, a write refused with EFBIG ends in a segfault on close), while
    Python's file writes raise a clean ``OSError``.  A stale copy from a killed
    commit is overwritten by the next one.
    """
    p = Path(path)
    if check:
        open_checked(p).close()
    faults.point("commit:open")
    try:
        f = h5py.File(p, "r+", driver="core", backing_store=False)
    except OSError as e:
        raise RambleError(f"cannot open {p} for writing: {e}") from None
    try:
        yield f
        f.flush()
        image = compacted_image(f)
    finally:
        f.close()
    faults.point("commit:image")
    write_atomically(p, image)


def compacted_image(src: h5py.File) -> bytes:
    """The image of a copy of ``src`` holding only its live objects.

    HDF5 does not give back the space of deleted datasets once a file is
    closed, so a file whose path checkpoint is replaced every minute would
    grow by the checkpoint's size each time (measured: 25 MB instead of 4 MB
    for a small MNIST run).  Copying object by object (HDF5's object copy,
    which keeps chunking, filters and attributes) leaves the garbage behind.
    """
    with h5py.File(src.filename + ".compact", "w", driver="core", backing_store=False) as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        for name in src:
            src.copy(src[name], dst, name=name)
        dst.flush()
        return dst.id.get_file_image()


def write_atomically(path: Path, data: bytes) -> None:
    """Put ``data`` (an HDF5 file image, a JSON index, a report) at ``path`` all-or-nothing: staging copy, fsync, rename."""
    tmp = staging_path(path)
    ok = False
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            faults.point("commit:written")
            fh.flush()
            os.fsync(fh.fileno())
        faults.point("commit:synced")
        os.replace(tmp, path)
        _fsync_dir(path.parent if str(path.parent) else Path("."))
        ok = True
    except OSError as e:
        raise RambleError(f"cannot write {path}: {e}; the file keeps its previous state") from None
    finally:
        if not ok:
            tmp.unlink(missing_ok=True)
    faults.point("commit:renamed")


# --------------------------------------------------------------------- reading
@dataclass(repr=False)
class LinearRecord:
    """Measurements along the straight line W_a -> W_b at ``alpha`` in [0, 1] (``/paths/<i>-<j>/linear``)."""

    alpha: np.ndarray
    """(L,) in [0, 1]: the point W_a + alpha (W_b - W_a)."""
    train_loss: np.ndarray
    """(L,): mean training loss (nats)."""
    train_error: np.ndarray
    """(L,): fraction of training samples misclassified."""
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    """Other datasets: ``test_loss``, ``test_error`` (LeNet5)."""

    def __repr__(self) -> str:
        return _short_repr(self, ("alpha", "train_error", "extra"))


@dataclass(repr=False)
class CurveRecord:
    """Another method's curve W_a -> W_b held against S (``/paths/<i>-<j>/curves/<name>``, :mod:`ramble.analysis.curves`).

    ``t`` (n,) in [0, 1]; ``train_loss`` (nats), ``train_error`` (fraction)
    (n,); ``extra``: the other datasets (``test_loss``, ``test_error``,
    ``theta``, ``loss_history``); ``attrs``: settings and summaries
    (``outside_fraction``, ``max_train_error``, ``config`` JSON, ...).
    """

    name: str
    t: np.ndarray
    train_loss: np.ndarray
    train_error: np.ndarray
    attrs: dict[str, Any]
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __repr__(self) -> str:
        return _short_repr(self, ("name", "t", "train_error", "extra"))


def _short(v: Any) -> str:
    """A value for a repr: arrays as shape and dtype, long containers as their length."""
    if isinstance(v, np.ndarray):
        return f"array{v.shape} {v.dtype}"
    if isinstance(v, dict):
        return f"{{{len(v)} keys}}" if len(v) > 4 else "{" + ", ".join(f"{k!r}: {_short(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (LinearRecord, CurveRecord, HessianRecord, ControlRecord)):
        return type(v).__name__
    return repr(v)


def _short_repr(obj: Any, names: Iterable[str]) -> str:
    return f"{type(obj).__name__}(" + ", ".join(f"{n}={_short(getattr(obj, n))}" for n in names) + ")"


@dataclass(repr=False)
class HessianRecord(Mapping[str, Any]):
    """Spectra at some points of a path (``/paths/<i>-<j>/hessian``, docs/hessian.md).

    Typed fields for what every spectrum has; ``arrays`` holds every stored
    dataset by name.  Also reads like the dict it used to be
    (``h["eigenvalues"]``, ``h.get("trace")``, ``h["attrs"]``).
    """

    index: np.ndarray
    """(H,) int64: rows of the path's ``weights`` analysed (both endpoints included)."""
    eigenvalues: np.ndarray
    """(H, k), descending: the TCM's full spectrum, LeNet5's top k (Lanczos)."""
    trace: Optional[np.ndarray]
    """(H,): exact (TCM) or a Hutchinson estimate (LeNet5); None when not stored."""
    attrs: dict[str, Any]
    """Settings: ``method``, ``which``, ``k``, ``tol``, ``subset_size``, ``device``, ..."""
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    """Every stored dataset by name (``index``, ``eigenvalues``, ``trace``, ``trace_se``, ``n_nonzero``, ``residuals``, ``seconds``, ...)."""

    def _as_dict(self) -> dict[str, Any]:
        return {**self.arrays, "attrs": self.attrs}

    def __getitem__(self, key: str) -> Any:
        return self._as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._as_dict())

    def __len__(self) -> int:
        return len(self.arrays) + 1

    def __repr__(self) -> str:
        return _short_repr(self, ("index", "eigenvalues", "attrs"))


@dataclass(repr=False)
class ControlRecord:
    """Training continued from both endpoints, the controls of the test-error claim (``/paths/<i>-<j>/controls``, :mod:`ramble.analysis.controls`)."""

    attrs: dict[str, Any]
    """Summary: the path's best point (``best_test_error``, ``best_epochs``, ``best_train_loss``) and per endpoint (``source_``/``target_``) the test error of each control."""
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    """Per endpoint: ``<end>_epoch``, ``<end>_train_loss``, ``<end>_test_error``, ``<end>_test_loss`` along the continued training."""

    def __repr__(self) -> str:
        return _short_repr(self, ("attrs",))


@dataclass(repr=False)
class PathRecord:
    """One stored path (``/paths/<i>-<j>``; docs/format.md).

    Per-point arrays have one row per recorded point (T); ``weights`` has one
    row per point whose weights were kept (all T, or the rows ``weight_index``
    names).  ``print(p)`` shows shapes, not values.
    """

    name: str
    """Group name, ``"<source>-<target>"``."""
    source: int
    """Index of the solution the path starts at (W_a)."""
    target: int
    """Index of the solution it goes to (W_b)."""
    status: str
    """``"complete"`` (arrived at W_b inside S) or ``"failed"``."""
    reason: str
    """Why it failed; empty when complete."""
    attrs: dict[str, Any]
    """The group's attributes: ``iterations``, ``wall_time`` (s), ``path_config`` (JSON), elastic-step counts, ``sha256``, ..."""
    weights: np.ndarray
    """(T_w, P) float: kept points, row 0 W_a, last row W_b when complete; (0, 0) when loaded with ``weights=False``."""
    iteration: np.ndarray
    """(T,) int64: iteration after which each point was recorded (-1 for W_a)."""
    distance: np.ndarray
    """(T,): the paper's normalised distance 1 - |w - W_b| / |W_a - W_b|, 0 at W_a, 1 at W_b (it can go backwards)."""
    train_loss: np.ndarray
    """(T,): mean training loss (nats)."""
    train_error: np.ndarray
    """(T,): fraction of training samples misclassified (0 everywhere on a path inside S)."""
    decisions: np.ndarray
    """(iterations,) int8: one row per *iteration* (not per recorded point): 0 elastic step refused, 1 accepted, 2 accepted after repair."""
    extra: dict[str, np.ndarray]
    """Every other per-point dataset by name (``test_loss``, ``test_error``, ``gd_refused``, ``weight_index``, ``leg``, ``arclength``, ...)."""
    linear: Optional[LinearRecord]
    """The straight line W_a -> W_b, or None."""
    hessian: Optional[HessianRecord]
    """Spectra at some points (``ramble hessian``), or None."""
    curves: dict[str, CurveRecord] = field(default_factory=dict)
    """Other methods' curves (``ramble curves``): ``bezier``, ``linear``; empty when not computed."""
    test_loss: Optional[np.ndarray] = None
    """(T,): mean test loss (nats), LeNet5; None for the TCM (no test set)."""
    test_error: Optional[np.ndarray] = None
    """(T,): fraction of test samples misclassified, LeNet5; None for the TCM."""
    arclength: Optional[np.ndarray] = None
    """(T,): cumulative Euclidean length of the path in weight space up to each point (0 at W_a); None when it cannot be known (see ``arclength_source``)."""
    arclength_source: str = ""
    """Where ``arclength`` comes from: ``"stored"`` (every iteration's step summed by the run), ``"weights"`` (computed on loading from every recorded point's weights: the polyline through them, a lower bound when points were recorded at a stride), or why it is None."""
    controls: Optional[ControlRecord] = None
    """Training continued from both endpoints (``ramble controls``), or None."""
    line_length: float = float("nan")
    """|W_b - W_a|, the straight line's length in weight space (from the stored solutions; nan when one is missing)."""
    align: dict[str, "AlignRecord"] = field(default_factory=dict)
    """W_b aligned to W_a by permuting hidden units (``ramble align``), by method (``weights``, ``activations``); empty when not computed."""

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def length_ratio(self) -> float:
        """Path length / straight-line length (>= 1 for a complete path); nan when either is unknown."""
        if self.arclength is None or not len(self.arclength):
            return float("nan")
        d = self.line_length
        return float(self.arclength[-1]) / d if d > 0 else float("nan")  # nan when d is nan too

    def __repr__(self) -> str:
        return _short_repr(self, ("name", "status", "distance", "weights", "test_error", "arclength", "hessian", "controls"))


@dataclass(repr=False)
class Experiment:
    """A loaded experiment file (:func:`load`); ``print(e)`` shows what it holds, not the arrays."""

    path: Path
    """The file."""
    attrs: dict[str, Any]
    """Root attributes: ``status``, ``wall_time`` (s, the whole run), ``created``, ``finished``, ``ramble_version``, ..."""
    config: dict[str, Any]
    """The run's settings (the ``config`` attribute, decoded): sizes, seed, training and ``path`` settings."""
    model: str
    """``"tcm"`` or ``"lenet5"``."""
    backend: str
    """``"julia"``, ``"python"`` (TCM) or ``"torch"`` (LeNet5)."""
    status: str
    """``"complete"``, ``"running"`` (interrupted: ``ramble resume``) or ``"failed"``."""
    data: dict[str, Any]
    """``/data`` attributes; TCM adds ``train_inputs`` (M, N) and ``train_labels`` (M,) int8 +-1."""
    model_info: dict[str, Any]
    """``/model`` attributes (parameter layout)."""
    solutions: dict[int, np.ndarray]
    """Solution index -> (P,) float64 weights."""
    solution_attrs: dict[int, dict[str, Any]]
    """Solution index -> how it was found (``init_seed``, ``epochs``, ``min_margin``, LeNet5 ``test_error``, ...)."""
    paths: dict[str, PathRecord]
    """``"i-j"`` -> the path from solution i to j; :meth:`iter_paths` in order."""

    def __repr__(self) -> str:
        sols = f"{len(self.solutions)} of {next(iter(self.solutions.values())).shape[0]} weights" if self.solutions else "0"
        return f"Experiment({str(self.path)!r}, model={self.model!r}, backend={self.backend!r}, status={self.status!r}, solutions={sols}, paths={sorted(self.paths)})"

    def iter_paths(self) -> Iterator[PathRecord]:
        return iter(self.paths[k] for k in sorted(self.paths, key=lambda s: tuple(int(x) for x in s.split("-"))))


def decode_attr(v: Any) -> Any:
    """An attribute value as h5py gives it, made plain: bytes as str, NumPy scalars as Python ones, arrays as lists."""
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def attrs_of(obj: h5py.HLObject) -> dict[str, Any]:
    """Every attribute of a file, group or dataset, decoded (:func:`decode_attr`)."""
    return {k: decode_attr(v) for k, v in obj.attrs.items()}


def open_checked(path: str | os.PathLike, mode: str = "r") -> h5py.File:
    """Open ``path`` as a ramble file of a supported version, or raise FormatError."""
    p = Path(path)
    if not p.exists():
        raise FormatError(f"{p}: no such file")
    if p.is_dir():
        raise FormatError(f"{p} is a folder, expected a ramble .h5 file")
    try:
        f = h5py.File(p, mode)
    except OSError as e:
        msg = str(e).split("(")[0].strip()
        if "errno = 11" in str(e) or "Errno 11" in str(e) or "unable to lock file" in str(e).lower():
            raise FormatError(f"{p} is open for writing by another process (a run in progress?); try again when it has finished") from None
        raise FormatError(f"{p} is not a readable HDF5 file ({msg}); truncated or not written by ramble?") from None
    fmt = decode_attr(f.attrs.get("format", ""))
    if fmt != FORMAT:
        f.close()
        raise FormatError(f"{p} is an HDF5 file but not a ramble file (format attribute {fmt!r}, expected {FORMAT!r})")
    ver = decode_attr(f.attrs.get("format_version", -1))
    if not isinstance(ver, int) or ver < 1 or ver > FORMAT_VERSION:
        f.close()
        raise FormatError(f"{p} has ramble format version {ver}; this ramble reads versions 1..{FORMAT_VERSION} (upgrade ramble)")
    return f


def load(path: str | os.PathLike, weights: bool = True) -> Experiment:
    """Load an experiment file into NumPy arrays.  ``weights=False`` skips path weights (large for LeNet5)."""
    try:
        with open_checked(path) as f:
            return _load(Path(path), f, weights)
    except (KeyError, OSError) as e:
        raise FormatError(f"{path}: damaged ramble file ({e})") from None


def _load_curves(g: h5py.Group) -> dict[str, CurveRecord]:
    """The ``curves/<name>`` subgroups of a path group (``bezier``, ``linear``); empty when none were computed."""
    out: dict[str, CurveRecord] = {}
    for name, c in (g["curves"].items() if "curves" in g else []):
        core = ("t", "train_loss", "train_error")
        out[name] = CurveRecord(
            name=name,
            t=c["t"][()],
            train_loss=c["train_loss"][()],
            train_error=c["train_error"][()],
            attrs=attrs_of(c),
            extra={k: c[k][()] for k in c if k not in core and isinstance(c[k], h5py.Dataset)},
        )
    return out


def _load_hessian(hg: h5py.Group) -> HessianRecord:
    arrays = {k: hg[k][()] for k in hg}
    return HessianRecord(index=arrays.get("index", np.zeros(0, np.int64)), eigenvalues=arrays.get("eigenvalues", np.zeros((0, 0))), trace=arrays.get("trace"), attrs=attrs_of(hg), arrays=arrays)


def _arclength(g: h5py.Group, extra: Mapping[str, np.ndarray]) -> tuple[Optional[np.ndarray], str]:
    """(cumulative path length (T,), where it comes from): the stored ``arclength``, else computed from the weights when every point's are kept."""
    if "arclength" in extra:
        return np.asarray(extra["arclength"], dtype=float), "stored"
    n = len(g["distance"])
    w = g.get("weights")
    if "weight_index" in g or w is None or w.shape[0] != n:
        kept = 0 if w is None else w.shape[0]
        return None, f"not stored (older file) and weights kept for only {kept} of {n} points"
    steps = np.zeros(n)
    prev = w[0]
    for start in range(1, n, 256):  # blocks: a LeNet5 weight matrix need not fit in memory twice
        block = w[start : start + 256]
        diffs = np.diff(np.vstack([prev[None, :], block]), axis=0)
        steps[start : start + len(block)] = np.linalg.norm(diffs, axis=1)
        prev = block[-1]
    return np.cumsum(steps), "weights"


def _load(path: Path, f: h5py.File, weights: bool) -> Experiment:
    attrs = attrs_of(f)
    config = json.loads(attrs.get("config", "{}"))
    data: dict[str, Any] = attrs_of(f["data"]) if "data" in f else {}
    if "data/train/inputs" in f:
        data["train_inputs"] = f["data/train/inputs"][()]
        data["train_labels"] = f["data/train/labels"][()]
    if "data/test/inputs" in f:  # stored by torch runs (a test set is optional)
        data["test_inputs"] = f["data/test/inputs"][()]
        data["test_labels"] = f["data/test/labels"][()]
    model_info = attrs_of(f["model"]) if "model" in f else {}
    sols: dict[int, np.ndarray] = {}
    sol_attrs: dict[int, dict[str, Any]] = {}
    for k, d in f.get("solutions", {}).items():
        sols[int(k)] = d[()]
        sol_attrs[int(k)] = attrs_of(d)
    paths: dict[str, PathRecord] = {}
    core = {"weights", "iteration", "distance", "train_loss", "train_error", "decisions", "linear", "hessian"}
    for name, g in f.get("paths", {}).items():
        a = attrs_of(g)
        lin = None
        if "linear" in g:
            lg = g["linear"]
            lin = LinearRecord(
                alpha=lg["alpha"][()],
                train_loss=lg["train_loss"][()],
                train_error=lg["train_error"][()],
                extra={k: lg[k][()] for k in lg if k not in ("alpha", "train_loss", "train_error")},
            )
        hess = _load_hessian(g["hessian"]) if "hessian" in g else None
        controls = None
        if "controls" in g:
            cg = g["controls"]
            controls = ControlRecord(attrs=attrs_of(cg), arrays={k: cg[k][()] for k in cg})
        extra = {k: g[k][()] for k in g if k not in core and isinstance(g[k], h5py.Dataset)}
        src, dst = int(a.get("from", name.split("-")[0])), int(a.get("to", name.split("-")[1]))
        arclength, arclength_source = _arclength(g, extra)
        paths[name] = PathRecord(
            name=name,
            source=src,
            target=dst,
            status=str(a.get("status", "")),
            reason=str(a.get("reason", "")),
            attrs=a,
            weights=g["weights"][()] if weights else np.empty((0, 0)),
            iteration=g["iteration"][()],
            distance=g["distance"][()],
            train_loss=g["train_loss"][()],
            train_error=g["train_error"][()],
            decisions=g["decisions"][()] if "decisions" in g else np.empty(0, np.int8),
            extra=extra,
            linear=lin,
            hessian=hess,
            curves=_load_curves(g),
            test_loss=extra.get("test_loss"),
            test_error=extra.get("test_error"),
            arclength=arclength,
            arclength_source=arclength_source,
            controls=controls,
            align=_load_align(g, weights),
            line_length=float(np.linalg.norm(sols[dst] - sols[src])) if src in sols and dst in sols else float("nan"),
        )
    return Experiment(
        path=path,
        attrs=attrs,
        config=config,
        model=str(attrs.get("model", "")),
        backend=str(attrs.get("backend", "")),
        status=str(attrs.get("status", "")),
        data=data,
        model_info=model_info,
        solutions=sols,
        solution_attrs=sol_attrs,
        paths=paths,
    )


def path_result(p: PathRecord) -> "PathResult":
    """A stored path as the :class:`ramble.core.path.PathResult` that was written (weights must be loaded).

    Used when resuming: finished paths are read back, never recomputed.
    """
    from ramble.core.path import PathResult

    extra = dict(p.extra)
    gd_refused = extra.pop("gd_refused", np.zeros(0, np.int8))
    weight_index = extra.pop("weight_index", None)
    arclength = extra.pop("arclength", None)
    a = p.attrs
    return PathResult(
        status=p.status,
        reason=p.reason,
        weights=p.weights,
        iteration=p.iteration,
        distance=p.distance,
        train_loss=p.train_loss,
        train_error=p.train_error,
        decisions=p.decisions,
        gd_refused=gd_refused,
        iterations=int(a["iterations"]),
        elastic_accepted=int(a["elastic_accepted"]),
        elastic_repaired=int(a["elastic_repaired"]),
        elastic_refused=int(a["elastic_refused"]),
        gd_accepted=int(a["gd_accepted"]),
        gd_refused_total=int(a["gd_refused_total"]),
        segment_checks=int(a["segment_checks"]),
        wall_time=float(a["wall_time"]),
        config=json.loads(a.get("path_config", "{}")),
        weight_index=weight_index,
        extra=extra,
        waypoints=[int(x) for x in np.atleast_1d(a.get("waypoint_iterations", []))],
        waypoints_trained=int(a.get("waypoints_trained", 0)),
        escape_scale=float(a.get("escape_scale", 1.0)),
        via=[int(x) for x in np.atleast_1d(a.get("via", []))],
        arclength=arclength,
        segments_certified=int(a.get("segments_certified", 0)),
        cert_pieces=int(a.get("cert_pieces", 0)),
        cert_min_margin=float(a.get("cert_min_margin", float("inf"))),
        cert_seconds=float(a.get("cert_seconds", 0.0)),
    )


# ------------------------------------------------------------- aligned pairs
ALIGN_GROUP = "align"
"""``/paths/<i>-<j>/align/<method>``: W_j aligned to W_i by a permutation of hidden units (:mod:`ramble.analysis.align`, docs/align.md)."""


@dataclass(repr=False)
class AlignRecord:
    """W_b aligned to W_a by a permutation of hidden units, held against S (``/paths/<i>-<j>/align/<method>``; docs/format.md).

    ``attrs``: how and what was found (``distance_before`` |W_a - W_b|,
    ``distance_after`` |W_a - pi(W_b)|, ``logits_max_abs_diff`` of the
    function check, ``groups`` JSON, ...).  ``perms``: per hidden group, the
    int64 permutation (unit u of pi(W_b) is unit perm[u] of W_b).
    ``aligned``: pi(W_b), (P,) float64.  ``line``: the straight line W_a ->
    pi(W_b) on the unaligned line's t grid (``t``, ``train_loss``,
    ``train_error``; ``extra``: ``test_loss``, ``test_error``; ``attrs``:
    ``outside_fraction``, ``max_train_error``, ``membership``, ...).
    ``path_attrs``/``path``: ramble's path W_a -> pi(W_b) (per-point arrays
    ``iteration``, ``distance``, ``train_loss``, ``train_error``,
    ``test_error``, ...; ``weights`` only when loaded with weights); empty
    when it was not drawn.
    """

    method: str
    attrs: dict[str, Any]
    perms: dict[str, np.ndarray]
    aligned: np.ndarray
    line: CurveRecord
    path_attrs: dict[str, Any] = field(default_factory=dict)
    path: dict[str, np.ndarray] = field(default_factory=dict)

    def __repr__(self) -> str:
        return _short_repr(self, ("method", "attrs", "perms", "aligned", "path"))


def write_align(
    path: str | os.PathLike,
    pair: str,
    method: str,
    attrs: Mapping[str, Any],
    perms: Mapping[str, np.ndarray],
    aligned: np.ndarray,
    line: Mapping[str, np.ndarray],
    line_attrs: Mapping[str, Any],
    path_arrays: Optional[Mapping[str, np.ndarray]] = None,
    path_attrs: Optional[Mapping[str, Any]] = None,
) -> None:
    """Replace ``/paths/<pair>/align/<method>`` (one all-or-nothing :func:`update`); layout in :class:`AlignRecord` and docs/format.md."""
    with update(path) as f:
        if f"paths/{pair}" not in f:
            raise RambleError(f"{path} has no path {pair!r}")
        top = f[f"paths/{pair}"].require_group(ALIGN_GROUP)
        if method in top:
            del top[method]
        g = top.create_group(method)
        g.attrs["method"] = method
        for k, v in attrs.items():
            g.attrs[k] = encode_attr(v)
        g.create_dataset("aligned", data=np.asarray(aligned, dtype=np.float64))
        pg = g.create_group("perms")
        for name, perm in perms.items():
            pg.create_dataset(name, data=np.asarray(perm, dtype=np.int64))
        lg = g.create_group("line")
        for k, v in line.items():
            lg.create_dataset(k, data=np.asarray(v))
        for k, v in line_attrs.items():
            lg.attrs[k] = encode_attr(v)
        if path_arrays is not None:
            rg = g.create_group("path")
            for k, v in path_arrays.items():
                big = k == "weights"
                rg.create_dataset(k, data=np.asarray(v), chunks=True if big else None, compression="gzip" if big else None, shuffle=big)
            for k, v in (path_attrs or {}).items():
                rg.attrs[k] = encode_attr(v)
            rg.attrs["sha256"] = datasets_sha256(rg)


def _load_align(g: h5py.Group, weights: bool) -> dict[str, AlignRecord]:
    """The ``align/<method>`` subgroups of a path group; empty when ``ramble align`` has not run on it."""
    out: dict[str, AlignRecord] = {}
    for method, a in (g[ALIGN_GROUP].items() if ALIGN_GROUP in g else []):
        lg = a["line"]
        core = ("t", "train_loss", "train_error")
        line = CurveRecord(name="aligned line", t=lg["t"][()], train_loss=lg["train_loss"][()], train_error=lg["train_error"][()],
                           attrs=attrs_of(lg), extra={k: lg[k][()] for k in lg if k not in core})
        rg = a.get("path")
        arrays = {k: rg[k][()] for k in rg if weights or k != "weights"} if rg is not None else {}
        out[method] = AlignRecord(method=method, attrs=attrs_of(a), perms={k: v[()] for k, v in a["perms"].items()}, aligned=a["aligned"][()], line=line,
                                  path_attrs=attrs_of(rg) if rg is not None else {}, path=arrays)
    return out
