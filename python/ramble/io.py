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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional

import h5py
import numpy as np

from . import __version__, faults
from .errors import FormatError, RambleError

if TYPE_CHECKING:
    from .path import PathResult

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
    """Writes one experiment file, one all-or-nothing commit at a time; use as a context manager.

    The file on disk is only ever replaced whole by :func:`update` (copy,
    change, fsync, atomic rename), so a run killed at any moment leaves the
    last committed state: a file that opens, says ``status="running"`` and can
    be resumed.  Group related writes with :meth:`commit` (a finished path and
    its straight line land together); a write outside such a block is its own
    commit.  On creation the file holds only the root attributes.  An
    exception inside the ``with`` block marks the file ``"failed"`` with the
    message (itself a commit, skipped if the disk is full) and re-raises.

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
        if model not in MODELS:
            raise RambleError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
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
            for k, v in (attrs or {}).items():
                a[k] = _attr(v)
            f.flush()
            image = f.id.get_file_image()
        write_atomically(self.path, image)

    def _check_resumable(self, model: str, backend: str, config_json: str) -> None:
        with open_checked(self.path) as f:
            a = _attrs(f)
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
        if exc is None:
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
                g.attrs[k] = _attr(v)

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
                d.attrs[k] = _attr(v)

    def write_path(self, i: int, j: int, result: Any, extra: Optional[Mapping[str, np.ndarray]] = None) -> None:
        """``/paths/<i>-<j>``: a :class:`ramble.path.PathResult` and optional extra per-point datasets.

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
                g.attrs[k] = _attr(v)

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
                g.attrs[k] = _attr(v)
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
                a[k] = _attr(v)
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


def _attr(v: Any) -> Any:
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
@dataclass
class LinearRecord:
    """Measurements along the straight line W_a -> W_b at ``alpha`` in [0, 1]."""

    alpha: np.ndarray
    train_loss: np.ndarray
    train_error: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class CurveRecord:
    """Another method's curve W_a -> W_b held against S (``/paths/<i>-<j>/curves/<name>``, :mod:`ramble.curves`).

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
    curves: dict[str, CurveRecord] = field(default_factory=dict)

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
        if "errno = 11" in str(e) or "Errno 11" in str(e) or "unable to lock file" in str(e).lower():
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
            attrs=_attrs(c),
            extra={k: c[k][()] for k in c if k not in core and isinstance(c[k], h5py.Dataset)},
        )
    return out


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
            curves=_load_curves(g),
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
    """A stored path as the :class:`ramble.path.PathResult` that was written (weights must be loaded).

    Used when resuming: finished paths are read back, never recomputed.
    """
    from .path import PathResult

    extra = dict(p.extra)
    gd_refused = extra.pop("gd_refused", np.zeros(0, np.int8))
    weight_index = extra.pop("weight_index", None)
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
    )
