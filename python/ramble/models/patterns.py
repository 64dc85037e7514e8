"""Random +-1 training sets for the Tree Committee Machine (paper Sect. 3.1).

Generated once, in Python, from a seed, and handed to whichever backend runs,
so the Julia and Python backends see identical data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ramble.errors import ConfigError


@dataclass(frozen=True)
class Patterns:
    """A training set of M patterns of N inputs.

    ``inputs`` has shape (M, N) and ``labels`` shape (M,), both int8 with
    values in {-1, +1}.
    """

    inputs: np.ndarray
    labels: np.ndarray
    seed: int

    @property
    def n_patterns(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def n_inputs(self) -> int:
        return int(self.inputs.shape[1])


def random_patterns(n_inputs: int, n_patterns: int, seed: int) -> Patterns:
    """Draw inputs and labels independently and uniformly from {-1, +1}.

    Uses ``numpy.random.default_rng(seed)``: first the (M, N) inputs, then the
    (M,) labels, so a given seed always yields the same set.
    """
    if n_inputs < 1:
        raise ConfigError(f"N must be a positive integer, got {n_inputs}")
    if n_patterns < 1:
        raise ConfigError(f"M must be a positive integer, got {n_patterns}")
    rng = np.random.default_rng(seed)
    inputs = (2 * rng.integers(0, 2, size=(n_patterns, n_inputs)) - 1).astype(np.int8)
    labels = (2 * rng.integers(0, 2, size=n_patterns) - 1).astype(np.int8)
    return Patterns(inputs=inputs, labels=labels, seed=seed)
