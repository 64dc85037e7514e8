"""Compare two experiment files, timings aside (``ramble diff A B``).

What "the same command and seed give the same file" means, made checkable:
every group, dataset (shape, dtype and bytes) and attribute must match,
except the attributes that time or date one run of the program
(:data:`RUN_ATTRS`).  Used by the determinism and kill-and-resume tests.
"""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np

from ramble.storage.io import open_checked

#: Attributes that describe a run of the program (when, how long, how often
#: resumed), not its result; ``diff`` ignores them wherever they appear, and
#: datasets of these names (per-point timings such as ``hessian/seconds``).
RUN_ATTRS = frozenset({"created", "finished", "wall_time", "wall_s", "seconds", "cert_seconds", "resumes", "saved", "error"})


def _same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a.view(f"u{a.dtype.itemsize}"), b.view(f"u{b.dtype.itemsize}")))  # bit for bit, NaNs included
    return bool(np.array_equal(a, b))


def _attr_diffs(name: str, a: h5py.HLObject, b: h5py.HLObject, ignore: frozenset) -> list[str]:
    out = []
    keys_a = set(a.attrs) - ignore
    keys_b = set(b.attrs) - ignore
    for k in sorted(keys_a ^ keys_b):
        out.append(f"{name}: attribute {k!r} only in {'first' if k in keys_a else 'second'}")
    for k in sorted(keys_a & keys_b):
        if not _same(a.attrs[k], b.attrs[k]):
            out.append(f"{name}: attribute {k!r} differs ({a.attrs[k]!r} vs {b.attrs[k]!r})"[:300])
    return out


def diff(path_a: str | os.PathLike, path_b: str | os.PathLike, ignore: frozenset = RUN_ATTRS) -> list[str]:
    """Differences between two ramble files, one line each (empty: the same up to ``ignore``d attributes)."""
    out: list[str] = []
    with open_checked(path_a) as fa, open_checked(path_b) as fb:
        out += _attr_diffs("/", fa, fb, ignore)
        names_a: list[str] = []
        names_b: list[str] = []
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        for n in sorted(set(names_a) ^ set(names_b)):
            out.append(f"/{n}: only in {'first' if n in names_a else 'second'}")
        for n in sorted(set(names_a) & set(names_b)):
            ia, ib = fa[n], fb[n]
            if isinstance(ia, h5py.Dataset) != isinstance(ib, h5py.Dataset):
                out.append(f"/{n}: a dataset in one file, a group in the other")
                continue
            if isinstance(ia, h5py.Dataset) and n.rsplit("/", 1)[-1] not in ignore and not _same(ia[()], ib[()]):
                out.append(f"/{n}: data differ (shapes {ia.shape} vs {ib.shape}, dtypes {ia.dtype} vs {ib.dtype})")
            out += _attr_diffs("/" + n, ia, ib, ignore)
    return out
