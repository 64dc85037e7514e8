"""Progress bars and logging that can be silenced.

Progress bars go to stderr through tqdm and are off when ``--quiet`` is given
or stderr is not a terminal (``RAMBLE_PROGRESS=1`` forces them on).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Iterable, Optional

from tqdm.auto import tqdm


def progress_enabled(quiet: bool = False) -> bool:
    if quiet:
        return False
    if os.environ.get("RAMBLE_PROGRESS") == "1":
        return True
    return sys.stderr.isatty()


def progress_bar(iterable: Optional[Iterable] = None, **kw: Any) -> tqdm:
    """A tqdm bar on stderr; ``disable=True`` makes it a silent pass-through."""
    kw.setdefault("leave", False)
    kw.setdefault("dynamic_ncols", True)
    return tqdm(iterable, file=sys.stderr, **kw)


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    """Log "ramble" messages to stderr: warnings only with ``quiet``, debug with ``verbose``."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logger = logging.getLogger("ramble")
    logger.setLevel(level)
    if not logger.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(h)
    logger.propagate = False


class PathProgress:
    """A bar from 0 to 1000 per mille of the normalised distance, fed by the path's progress callback.

    ``callback`` is None when the bar is disabled, so the path skips the calls.
    """

    def __init__(self, desc: str, enabled: bool) -> None:
        self.bar = progress_bar(total=1000, desc=desc, disable=not enabled, unit="‰")
        self.last = 0
        self.callback = self.tick if enabled else None

    def tick(self, _iteration: int, fraction: float) -> None:
        now = int(max(0.0, min(1.0, fraction)) * 1000)
        if now > self.last:
            self.bar.update(now - self.last)
            self.last = now

    def close(self) -> None:
        self.bar.close()
