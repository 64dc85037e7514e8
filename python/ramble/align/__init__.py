"""Permutation alignment of two solutions (Git Re-Basin), held against S: ``ramble align`` (docs/align.md).

* :mod:`ramble.align.spec` — the permutation structure of a torch classifier, by torch.fx;
* :mod:`ramble.align.matching` — weight matching and activation matching, applying permutations;
* :mod:`ramble.align.run` — a file's pair aligned, checked, held against S and stored.
"""

from .matching import Matching, activation_matching, apply_permutation, weight_matching
from .run import METHODS, AlignOutcome, align_file, answer, summary_lines
from .spec import PermGroup, PermSpec, permutation_spec

__all__ = [
    "METHODS", "AlignOutcome", "Matching", "PermGroup", "PermSpec", "activation_matching", "align_file", "answer",
    "apply_permutation", "permutation_spec", "summary_lines", "weight_matching",
]
