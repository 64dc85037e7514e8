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


def resume(path: str | Path, show_progress: bool = True, checkpoints: CheckpointPolicy = CheckpointPolicy()) -> Path:
    """Finish the run stored in ``path`` by its model's spec; returns its path.  A complete file only gets missing Hessians."""
    from ramble.analysis.spectra import HessianConfig, compute_and_store
    from ramble.models.registry import model_spec

    p = Path(path)
    a = stored_run(p)
    spec = model_spec(str(a.get("model")))
    try:
        subset = spec.hessian_subset(a["config"])
        device = spec.hessian_device(a["config"])
    except (KeyError, TypeError) as e:
        raise FormatError(f"{p}: its config cannot be read back by this ramble ({e}); cannot resume") from None
    if a.get("status") != "complete":
        spec.resume(p, a["config"], show_progress, checkpoints)
    points = int(a.get("hessian_points", 0))
    if points > 0:
        compute_and_store(p, HessianConfig(points=points, subset=subset), device=device, missing_only=True)
    return p
