"""The ramble HDF5 format (version 1): writing and loading experiment files.

One file holds one experiment: a data set, its solutions, the paths between
pairs of solutions, and measurements along them.  ``docs/format.md`` is the
full description; this module is its reference implementation.  Analysis code
uses :func:`load`, which returns plain NumPy arrays in small dataclasses.

A file is trustworthy only when its root attribute ``status`` is
``"complete"``; a run writes ``"running"`` first and ``"failed"`` (with
``error``) if it stops on an error, so a partial file is never passed off as
complete.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import h5py
import numpy as np

from . import __version__
from .errors import FormatError, RambleError

FORMAT = "ramble"
FORMAT_VERSION = 1
MODELS = ("tcm", "lenet5")
STATUSES = ("running", "complete", "failed")


def pair_name(i: int, j: int) -> str:
    """Group name of the path from solution ``i`` to solution ``j``."""
    return f"{i}-{j}"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------- writing
class ExperimentWriter:
    """Writes one experiment file; use as a context manager.

    On entry the file is created with ``status="running"``; on a clean exit
    the caller sets the final status with :meth:`finish`; an exception inside
    the block marks the file ``"failed"`` with the message, and re-raises.
    Refuses to overwrite an existing file unless ``force``.
    """

    def __init__(self, path: str | os.PathLike, model: str, backend: str, config: Mapping[str, Any], force: bool = False) -> None:
        if model not in MODELS:
            raise RambleError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
        self.path = Path(path)
        if self.path.exists() and not force:
            raise RambleError(f"output file {self.path} exists; pass --force to overwrite it")
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if not parent.is_dir():
            raise RambleError(f"output folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise RambleError(f"output folder {parent} is not writable")
        try:
            self.f = h5py.File(self.path, "w")
        except OSError as e:
            raise RambleError(f"cannot create {self.path}: {e}") from None
        a = self.f.attrs
        a["format"] = FORMAT
        a["format_version"] = FORMAT_VERSION
        a["model"] = model
        a["backend"] = backend
        a["config"] = json.dumps(dict(config), sort_keys=True)
        a["status"] = "running"
        a["ramble_version"] = __version__
        a["created"] = _now()
        self.f.flush()

    def __enter__(self) -> "ExperimentWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc is not None and self.f.id.valid:
                self.f.attrs["status"] = "failed"
                self.f.attrs["error"] = f"{exc_type.__name__}: {exc}"
        finally:
            if self.f.id.valid:
                self.f.close()

    # -- content -------------------------------------------------------
    def set_attrs(self, group: str, attrs: Mapping[str, Any]) -> None:
        g = self.f.require_group(group)
        for k, v in attrs.items():
            g.attrs[k] = _attr(v)

    def write_tcm_data(self, inputs: np.ndarray, labels: np.ndarray, seed: int) -> None:
        """``/data/train/inputs`` (M, N) int8 and ``labels`` (M,) int8, values +-1."""
        g = self.f.require_group("data/train")
        g.create_dataset("inputs", data=np.asarray(inputs, dtype=np.int8), compression="gzip")
        g.create_dataset("labels", data=np.asarray(labels, dtype=np.int8))
        self.f["data"].attrs["kind"] = "random_pm1"
        self.f["data"].attrs["seed"] = int(seed)
        self.f.flush()

    def write_solution(self, index: int, w: np.ndarray, attrs: Mapping[str, Any]) -> None:
        """``/solutions/<index>``: flat float64 weights with how they were found."""
        g = self.f.require_group("solutions")
        name = str(index)
        if name in g:
            del g[name]
        d = g.create_dataset(name, data=np.asarray(w, dtype=np.float64))
        for k, v in attrs.items():
            d.attrs[k] = _attr(v)
        self.f.flush()

    def write_path(self, i: int, j: int, result: Any, extra: Optional[Mapping[str, np.ndarray]] = None) -> h5py.Group:
        """``/paths/<i>-<j>``: a :class:`ramble.path.PathResult` and optional extra per-point datasets."""
        g = self.f.require_group("paths")
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
        for k, v in {**getattr(result, "extra", {}), **(extra or {})}.items():
            p.create_dataset(k, data=np.asarray(v))
        p.attrs["sha256"] = datasets_sha256(p)
        self.f.flush()
        return p

    def write_arrays(self, group: str, arrays: Mapping[str, np.ndarray], attrs: Optional[Mapping[str, Any]] = None) -> None:
        """Write (replacing) datasets under ``group``, e.g. ``paths/0-1/linear``."""
        g = self.f.require_group(group)
        for k, v in arrays.items():
            if k in g:
                del g[k]
            g.create_dataset(k, data=np.asarray(v))
        for k, v in (attrs or {}).items():
            g.attrs[k] = _attr(v)
        self.f.flush()

    def finish(self, status: str, **attrs: Any) -> None:
        if status not in STATUSES:
            raise ValueError(status)
        for k, v in attrs.items():
            self.f.attrs[k] = _attr(v)
        self.f.attrs["finished"] = _now()
        self.f.attrs["status"] = status
        self.f.flush()


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


def _attr(v: Any) -> Any:
    if isinstance(v, (dict, list, tuple)) and not (isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) for x in v)):
        return json.dumps(v, sort_keys=True)
    if v is None:
        return "null"
    return v


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

    The changes are made to a copy beside it (``.<name>.commit``), which is
    flushed, fsynced and renamed over ``path`` when the block ends without an
    exception.  A kill or an error (a full disk) at any moment leaves ``path``
    exactly as it was: the rename is atomic on POSIX file systems.  A stale
    copy from a killed commit is simply overwritten by the next one.
    """
    p = Path(path)
    if check:
        open_checked(p).close()
    tmp = staging_path(p)
    try:
        shutil.copyfile(p, tmp)
        f = h5py.File(tmp, "r+")
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise RambleError(f"cannot write {p}: {e}") from None
    ok = False
    try:
        yield f
        ok = True
    finally:
        try:
            f.close()
            if ok:
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, p)
                _fsync_dir(p.parent if str(p.parent) else Path("."))
        except OSError as e:
            ok = False
            raise RambleError(f"cannot write {p}: {e}; the file keeps its previous state") from None
        finally:
            if not ok:
                tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------- reading
@dataclass
class LinearRecord:
    """Measurements along the straight line W_a -> W_b at ``alpha`` in [0, 1]."""

    alpha: np.ndarray
    train_loss: np.ndarray
    train_error: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class PathRecord:
    """One stored path.  Arrays have one row per recorded point (T); see docs/format.md."""

    name: str
    source: int
    target: int
    status: str
    reason: str
    attrs: dict[str, Any]
    weights: np.ndarray
    iteration: np.ndarray
    distance: np.ndarray
    train_loss: np.ndarray
    train_error: np.ndarray
    decisions: np.ndarray
    extra: dict[str, np.ndarray]
    linear: Optional[LinearRecord]
    hessian: Optional[dict[str, Any]]

    @property
    def complete(self) -> bool:
        return self.status == "complete"


@dataclass
class Experiment:
    """A loaded experiment file."""

    path: Path
    attrs: dict[str, Any]
    config: dict[str, Any]
    model: str
    backend: str
    status: str
    data: dict[str, Any]
    model_info: dict[str, Any]
    solutions: dict[int, np.ndarray]
    solution_attrs: dict[int, dict[str, Any]]
    paths: dict[str, PathRecord]

    def iter_paths(self) -> Iterator[PathRecord]:
        return iter(self.paths[k] for k in sorted(self.paths, key=lambda s: tuple(int(x) for x in s.split("-"))))


def _decode(v: Any) -> Any:
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _attrs(obj: h5py.HLObject) -> dict[str, Any]:
    return {k: _decode(v) for k, v in obj.attrs.items()}


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
        if "errno = 11" in str(e) or "Errno 11" in str(e) or "lock" in str(e).lower():
            raise FormatError(f"{p} is open for writing by another process (a run in progress?); try again when it has finished") from None
        raise FormatError(f"{p} is not a readable HDF5 file ({msg}); truncated or not written by ramble?") from None
    fmt = _decode(f.attrs.get("format", ""))
    if fmt != FORMAT:
        f.close()
        raise FormatError(f"{p} is an HDF5 file but not a ramble file (format attribute {fmt!r}, expected {FORMAT!r})")
    ver = _decode(f.attrs.get("format_version", -1))
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


def _load(path: Path, f: h5py.File, weights: bool) -> Experiment:
    attrs = _attrs(f)
    config = json.loads(attrs.get("config", "{}"))
    data: dict[str, Any] = _attrs(f["data"]) if "data" in f else {}
    if "data/train/inputs" in f:
        data["train_inputs"] = f["data/train/inputs"][()]
        data["train_labels"] = f["data/train/labels"][()]
    model_info = _attrs(f["model"]) if "model" in f else {}
    sols: dict[int, np.ndarray] = {}
    sol_attrs: dict[int, dict[str, Any]] = {}
    for k, d in f.get("solutions", {}).items():
        sols[int(k)] = d[()]
        sol_attrs[int(k)] = _attrs(d)
    paths: dict[str, PathRecord] = {}
    core = {"weights", "iteration", "distance", "train_loss", "train_error", "decisions", "linear", "hessian"}
    for name, g in f.get("paths", {}).items():
        a = _attrs(g)
        lin = None
        if "linear" in g:
            lg = g["linear"]
            lin = LinearRecord(
                alpha=lg["alpha"][()],
                train_loss=lg["train_loss"][()],
                train_error=lg["train_error"][()],
                extra={k: lg[k][()] for k in lg if k not in ("alpha", "train_loss", "train_error")},
            )
        hess = None
        if "hessian" in g:
            hg = g["hessian"]
            hess = {k: hg[k][()] for k in hg}
            hess["attrs"] = _attrs(hg)
        paths[name] = PathRecord(
            name=name,
            source=int(a.get("from", name.split("-")[0])),
            target=int(a.get("to", name.split("-")[1])),
            status=str(a.get("status", "")),
            reason=str(a.get("reason", "")),
            attrs=a,
            weights=g["weights"][()] if weights else np.empty((0, 0)),
            iteration=g["iteration"][()],
            distance=g["distance"][()],
            train_loss=g["train_loss"][()],
            train_error=g["train_error"][()],
            decisions=g["decisions"][()] if "decisions" in g else np.empty(0, np.int8),
            extra={k: g[k][()] for k in g if k not in core and isinstance(g[k], h5py.Dataset)},
            linear=lin,
            hessian=hess,
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
