"""Analysis results written back into an experiment file (docs/format.md).

The analyses compute; these functions know where their results live:
``/connectivity`` (:mod:`ramble.analysis.connectivity`), ``/convexity/<kind>``
(:mod:`ramble.analysis.convexity`) and ``/paths/<i>-<j>/hessian``
(:mod:`ramble.analysis.spectra`).  Attributes go through
:func:`ramble.storage.io.encode_attr`, the format's one encoder.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, NamedTuple, Optional, Union

import h5py
import numpy as np

from ramble import __version__
from ramble.storage.io import attrs_of, encode_attr, update
from ramble.storage.views import Handle

CONNECTIVITY = "connectivity"
CONVEXITY = "convexity"
HESSIAN = "hessian"


# ----------------------------------------------------------------- connectivity
def write_connectivity(f: Handle, matrix: np.ndarray, attrs: Mapping[str, Any]) -> None:
    """Replace ``/connectivity`` in an open, writable file: dataset ``matrix`` (n, n) int8 and ``attrs``, in their order."""
    if CONNECTIVITY in f:
        del f[CONNECTIVITY]
    g = f.create_group(CONNECTIVITY)
    g.create_dataset("matrix", data=np.asarray(matrix).astype(np.int8))
    for k, v in attrs.items():
        g.attrs[k] = encode_attr(v)


def read_connectivity_group(f: Handle) -> Optional[tuple[np.ndarray, dict[str, Any]]]:
    """The stored ``/connectivity`` as (matrix (n, n) int8, decoded attributes), or None when the file has none."""
    if CONNECTIVITY not in f:
        return None
    g = f[CONNECTIVITY]
    return g["matrix"][()].astype(np.int8), attrs_of(g)


# -------------------------------------------------------------------- convexity
class ConvexityKind(NamedTuple):
    """What ``/convexity/<kind>`` holds: summary ``attrs``; per sample ``errors`` (n,), optional ``rescaled_errors`` (n,) and ``t`` (n,)."""

    attrs: Mapping[str, Any]
    errors: np.ndarray
    rescaled_errors: Optional[np.ndarray] = None
    t: Optional[np.ndarray] = None


def write_convexity(f: Handle, kinds: Mapping[str, ConvexityKind]) -> None:
    """Write (replacing) ``/convexity/<kind>`` for each of ``kinds``; kinds already stored and not given are kept.

    Error counts are stored as gzip-compressed int32, ``t`` as given;
    ``/convexity`` carries the ``ramble_version`` that wrote it last.
    """
    g = f.require_group(CONVEXITY)
    g.attrs["ramble_version"] = __version__
    for kind, r in kinds.items():
        if kind in g:
            del g[kind]
        k = g.create_group(kind)
        for a, v in r.attrs.items():
            k.attrs[a] = encode_attr(v)
        k.create_dataset("errors", data=np.asarray(r.errors).astype(np.int32), compression="gzip")
        if r.rescaled_errors is not None:
            k.create_dataset("rescaled_errors", data=np.asarray(r.rescaled_errors).astype(np.int32), compression="gzip")
        if r.t is not None:
            k.create_dataset("t", data=r.t)


def read_convexity_kinds(f: Handle) -> dict[str, dict[str, Any]]:
    """The decoded attributes of every stored ``/convexity/<kind>``, by kind in stored order (empty when never probed)."""
    if CONVEXITY not in f:
        return {}
    g = f[CONVEXITY]
    return {k: attrs_of(g[k]) for k in g if isinstance(g[k], h5py.Group)}


# ---------------------------------------------------------------------- hessian
def write_hessian(path: Union[str, os.PathLike], name: str, arrays: Mapping[str, Any], attrs: Mapping[str, Any]) -> None:
    """Replace ``/paths/<name>/hessian`` with ``arrays`` (datasets, in order) and ``attrs``, in one all-or-nothing commit."""
    with update(path) as f:
        g = f[f"paths/{name}"]
        if HESSIAN in g:
            del g[HESSIAN]
        h = g.create_group(HESSIAN)
        for k, v in arrays.items():
            h.create_dataset(k, data=np.asarray(v))
        for k, v in attrs.items():
            h.attrs[k] = encode_attr(v)
