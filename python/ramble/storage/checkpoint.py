"""Mid-path checkpoints: the state of a running path, saved into its experiment file and restored on resume.

A path on the whole of MNIST runs for half an hour or more on a CPU, so its
state is committed every ``every_seconds`` (and, for deterministic tests,
every ``every_iterations``) to ``/checkpoints/<i>-<j>`` of the experiment
file (the state, and the recorded points so far in resizable datasets); ``--resume`` restarts the path from there.  The path algorithm draws no
random numbers (its GD epochs visit the samples in a fixed order), so the
state is just the survey network, the counters and what was recorded so far;
the global torch RNG state is saved too, for ``measure`` callbacks that might
draw from it.  Restoring gives the same numbers, bit for bit, as an
uninterrupted run on the same device and thread count (tested).

The state is a nest of dicts, lists, numbers, strings and tensors, stored as
the bytes of ``torch.save`` and read with ``torch.load(weights_only=True)``,
which unpickles no arbitrary objects.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from ramble.errors import ConfigError, FormatError

STATE_VERSION = 3  # 2: certified paths (arc length, certification counters); 3: saves inside an iteration (cursor, anchor)
READABLE_VERSIONS = (2, 3)  # a version-2 state is one saved at an iteration's start, which version 3 reads as such


@dataclass(frozen=True)
class CheckpointPolicy:
    """When a running path commits its state: after ``every_seconds`` of wall time, or ``every_iterations``."""

    every_seconds: Optional[float] = 60.0
    every_iterations: Optional[int] = None

    def __post_init__(self) -> None:
        if self.every_seconds is not None and not (self.every_seconds > 0):
            raise ConfigError(f"--checkpoint-every must be > 0 seconds, got {self.every_seconds}")
        if self.every_iterations is not None and self.every_iterations < 1:
            raise ConfigError(f"checkpoint interval must be >= 1 iteration, got {self.every_iterations}")


def encode(state: dict) -> np.ndarray:
    """``state`` as uint8 bytes (``torch.save``)."""
    buf = io.BytesIO()
    torch.save({"version": STATE_VERSION, "state": state}, buf)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def decode(data: np.ndarray) -> dict:
    """Inverse of :func:`encode`; FormatError on bytes it cannot read."""
    try:
        box = torch.load(io.BytesIO(np.asarray(data, dtype=np.uint8).tobytes()), weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a damaged checkpoint
        raise FormatError(f"unreadable path checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(box, dict) or box.get("version") not in READABLE_VERSIONS:
        raise FormatError(f"path checkpoint of version {box.get('version') if isinstance(box, dict) else '?'}; this ramble reads versions {', '.join(map(str, READABLE_VERSIONS))}")
    return box["state"]


#: (dataset under ``progress/``, key of find_path's state, dtype): the running leg's recorded points.
PROGRESS = (
    ("iteration", "rec_iter", np.int64), ("distance", "dists", np.float64), ("arclength", "arcs", np.float64),
    ("train_loss", "losses", np.float64), ("train_error", "errors", np.float64),
)


class FileCheckpoint:
    """A :class:`ramble.core.checkpoint.Checkpoint` that commits to ``/checkpoints/<unit>`` of an experiment file through its writer."""

    def __init__(self, writer: Any, unit: str, policy: CheckpointPolicy) -> None:
        self.writer = writer
        self.unit = unit
        self.policy = policy
        self._ticks = 0
        self._last = time.monotonic()
        self.saves = 0
        data = writer.load_checkpoint(unit)
        self._pending: Optional[dict] = None if data is None else decode(data)

    def load(self) -> Optional[dict]:
        state, self._pending = self._pending, None
        if state is not None and "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        return state

    def due(self, within_iteration: bool = False) -> bool:
        p = self.policy
        if not within_iteration:
            self._ticks += 1
            if p.every_iterations is not None and self._ticks >= p.every_iterations:
                return True
        return p.every_seconds is not None and time.monotonic() - self._last >= p.every_seconds

    def save(self, state: dict) -> None:
        state = dict(state, torch_rng=torch.get_rng_state())
        leg = state.get("leg", state)  # the running leg's own state (a waypoint driver nests it)
        progress = {name: np.asarray(leg[key], dtype=dtype) for name, key, dtype in PROGRESS if key in leg}
        meta = {"iteration": int(state.get("iteration", -1)), "inside_iteration": int(leg.get("cursor") is not None), "state_version": STATE_VERSION}
        self.writer.save_checkpoint(self.unit, encode(state), meta, progress)
        self.saves += 1
        self._ticks = 0
        self._last = time.monotonic()
