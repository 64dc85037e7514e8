"""Abandoning a move in progress when a run is asked to stop (SIGTERM, Ctrl-C).

A move's certificate on a large training set takes minutes (whole MNIST: up
to about 12 minutes measured for one repaired elastic move).  Its work is a
pure function of the move's two ends, so it can be dropped and done again:
while :func:`abandonable` is active, long computations call
:func:`check_stop` between batches, and :class:`MoveAbandoned` unwinds to
the path search, which commits the state from before the move and stops.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator, Optional

__all__ = ["MoveAbandoned", "abandonable", "check_stop"]

_STOP_REQUESTED: contextvars.ContextVar[Optional[Callable[[], bool]]] = contextvars.ContextVar("ramble_stop_requested", default=None)


class MoveAbandoned(Exception):
    """A move's computation stopped because the run was asked to stop; the move is made again on resume."""


@contextlib.contextmanager
def abandonable(stop_requested: Callable[[], bool]) -> Iterator[None]:
    """Within the block, :func:`check_stop` raises :class:`MoveAbandoned` once ``stop_requested()`` is True."""
    token = _STOP_REQUESTED.set(stop_requested)
    try:
        yield
    finally:
        _STOP_REQUESTED.reset(token)


def check_stop() -> None:
    """Raise :class:`MoveAbandoned` if inside :func:`abandonable` and a stop was requested; else nothing (cheap)."""
    requested = _STOP_REQUESTED.get()
    if requested is not None and requested():
        raise MoveAbandoned()
