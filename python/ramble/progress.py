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
