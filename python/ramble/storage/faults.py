"""Fault injection for the crash-safety tests: kill, fill the disk or break Julia at a chosen moment.

A run passes named *fault points* as it goes (every stage of a file commit,
every checkpointed path iteration, every Julia call).  With the environment
variable ``RAMBLE_FAULT=<kind>@<n>`` the n-th point (counting from 1) acts:

- ``kill``: the process sends itself SIGKILL (no cleanup, no ``finally``);
- ``enospc``: ``OSError(ENOSPC)`` is raised, as a full disk would;
- ``julia``: the next Julia call is replaced by a call that throws inside Julia;
- ``term``, ``int``: the process sends itself SIGTERM or SIGINT (a scheduler's
  preemption, Ctrl-C) and goes on, as a real signal would let it.

``RAMBLE_FAULT_TRACE=<file>`` appends every point's name, one per line, so a
test can count the points of an uninterrupted run and pick kill points among
them.  Counting, not timing, decides where a fault lands: the tests are
deterministic.  Without the variables every call is a no-op.
"""

from __future__ import annotations

import errno
import os
import signal
from typing import Optional

ENV_FAULT = "RAMBLE_FAULT"
ENV_TRACE = "RAMBLE_FAULT_TRACE"
KINDS = ("kill", "enospc", "julia", "term", "int")

SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}

_count = 0


def _spec() -> Optional[tuple[str, int]]:
    raw = os.environ.get(ENV_FAULT, "")
    if not raw:
        return None
    kind, _, n = raw.partition("@")
    if kind not in KINDS or not n.isdigit() or int(n) < 1:
        raise ValueError(f"{ENV_FAULT}={raw!r}: expected <kind>@<n> with kind in {', '.join(KINDS)} and n >= 1")
    return kind, int(n)


def point(name: str) -> Optional[str]:
    """Pass fault point ``name``; returns the fault kind that must act here, if any.

    ``kill``, ``term``, ``int`` and ``enospc`` act inside this call; ``julia`` is returned for
    the caller (the bridge) to act on.
    """
    global _count
    trace = os.environ.get(ENV_TRACE)
    spec = _spec()
    if trace is None and spec is None:
        return None
    _count += 1
    if trace:
        with open(trace, "a") as fh:
            fh.write(name + "\n")
    if spec is None or spec[1] != _count:
        return None
    kind = spec[0]
    if kind in SIGNALS:
        os.kill(os.getpid(), SIGNALS[kind])
    if kind == "enospc":
        raise OSError(errno.ENOSPC, f"No space left on device (simulated at fault point {_count}, {name})")
    return kind


def reset() -> None:
    """Start counting from zero again (in-process tests)."""
    global _count
    _count = 0
