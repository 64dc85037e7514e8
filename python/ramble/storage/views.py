"""Parts of an open ramble file, read on demand (docs/format.md).

:func:`ramble.storage.io.load` reads a whole file into arrays; the checks
that walk a file path by path (``ramble verify``, the convexity probe, the
connectivity matrix) read only what they need, one path's weights at a
time.  They do it through :class:`StoredFile` and :class:`StoredPath`, so
the group, dataset and attribute names stay in this package.  Attributes
come decoded (:func:`ramble.storage.io.decode_attr`); a missing group or
dataset raises ``KeyError``, as h5py does.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Protocol, Union

import h5py
import numpy as np

from ramble.storage.io import attrs_of, datasets_sha256, open_checked

Handle = Union[h5py.File, h5py.Group]
"""An open ramble file as :func:`ramble.storage.io.open_checked` or :func:`ramble.storage.io.update` gives it."""


class RowArray(Protocol):
    """A stored (rows, P) array read lazily: indexing reads only the rows asked for."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __getitem__(self, index: Any) -> np.ndarray: ...


def path_order(name: str) -> tuple[int, ...]:
    """Sort key of a path group name ``"<i>-<j>"``: by source, then target."""
    return tuple(int(x) for x in name.split("-"))


class StoredPath:
    """One ``/paths/<i>-<j>`` of an open file: attributes decoded at once, datasets read when asked."""

    def __init__(self, group: h5py.Group, name: str) -> None:
        self._g = group
        self.name = name
        self.attrs: dict[str, Any] = attrs_of(group)

    @property
    def weights(self) -> RowArray:
        """The kept weight rows (T_w, P), unread until indexed."""
        return self._g["weights"]

    def read(self, key: str) -> np.ndarray:
        """The whole per-point dataset ``key`` (``train_error``, ``weight_index``, ``leg``, ...); KeyError when not stored."""
        return self._g[key][()]

    def get(self, key: str) -> Optional[np.ndarray]:
        """Like :meth:`read`, None when ``key`` is not stored."""
        return self._g[key][()] if key in self._g else None

    def sha256(self) -> str:
        """The checksum of the path's datasets recomputed from the data (:func:`ramble.storage.io.datasets_sha256`)."""
        return datasets_sha256(self._g)


class StoredFile:
    """An open ramble file seen part by part; wraps the handle, never closes it."""

    def __init__(self, f: Handle) -> None:
        self._f = f
        self.attrs: dict[str, Any] = attrs_of(f)

    @property
    def filename(self) -> str:
        return str(self._f.file.filename)

    def data_attrs(self) -> dict[str, Any]:
        """``/data`` attributes (where the training set comes from); KeyError when the file has no ``/data``."""
        return attrs_of(self._f["data"])

    def model_attrs(self) -> dict[str, Any]:
        """``/model`` attributes (parameter layout); KeyError when the file has no ``/model``."""
        return attrs_of(self._f["model"])

    @property
    def has_model(self) -> bool:
        return "model" in self._f

    def train_set(self) -> tuple[np.ndarray, np.ndarray]:
        """The stored training set: inputs (M, N) and labels (M,) (TCM files; int8 +-1)."""
        return self._f["data/train/inputs"][()], self._f["data/train/labels"][()]

    def solution_indices(self) -> list[int]:
        """The stored solutions' indices, ascending (their weights unread)."""
        return sorted(int(k) for k in self._f.get("solutions", {}))

    def solutions(self) -> dict[int, np.ndarray]:
        """Solution index -> (P,) weights as stored, in index order."""
        g = self._f.get("solutions", {})
        return {int(k): g[k][()] for k in sorted(g, key=int)}

    def path_names(self) -> list[str]:
        """The stored paths' names, by source then target."""
        return sorted(self._f.get("paths", {}), key=path_order)

    def path(self, name: str) -> StoredPath:
        return StoredPath(self._f["paths"][name], name)

    def paths(self) -> Iterator[StoredPath]:
        return (self.path(n) for n in self.path_names())


def as_stored(f: Union[Handle, StoredFile]) -> StoredFile:
    """``f`` as a :class:`StoredFile` (an open handle is wrapped, a view returned as it is)."""
    return f if isinstance(f, StoredFile) else StoredFile(f)


@contextmanager
def open_stored(path: Union[str, os.PathLike]) -> Iterator[StoredFile]:
    """Open a ramble file read-only (:func:`ramble.storage.io.open_checked`) as a :class:`StoredFile`."""
    with open_checked(path) as f:
        yield StoredFile(f)


def read_path_weights(path: Union[str, os.PathLike], name: str) -> np.ndarray:
    """All kept weight rows (T_w, P) of path ``name``; the file is opened as it is (KeyError, OSError or RuntimeError when damaged)."""
    with h5py.File(path, "r") as f:
        return f[f"paths/{name}/weights"][()]


@dataclass(frozen=True)
class CheckpointSummary:
    """Where a running path's committed checkpoint stands (``/checkpoints/<unit>``)."""

    unit: str
    iteration: int
    """Iteration the run continues with (-1 when not recorded)."""
    distance: float
    """Normalised distance of the last recorded point (NaN when none is recorded)."""
    saved: Any
    """When it was saved (ISO 8601 text), ``"?"`` when not recorded."""
    inside: bool = False
    """True when saved inside that iteration, after some of its moves (docs/resume.md)."""


def checkpoint_summaries(path: Union[str, os.PathLike]) -> list[CheckpointSummary]:
    """The checkpoints of a file (a run that has not finished), by unit name."""
    out = []
    with h5py.File(path, "r") as f:
        for unit, g in f.get("checkpoints", {}).items():
            d = g.get("progress/distance")
            distance = d[-1] if d is not None and len(d) else math.nan
            out.append(CheckpointSummary(unit, int(g.attrs.get("iteration", -1)), distance, g.attrs.get("saved", "?"),
                                         bool(g.attrs.get("inside_iteration", False))))
    return out
