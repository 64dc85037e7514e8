"""Permutation alignment of two solutions (Git Re-Basin), held against S: ``ramble align`` (docs/align.md).

* :mod:`ramble.analysis.align.spec` — the permutation structure of a torch classifier, by torch.fx;
* :mod:`ramble.analysis.align.matching` — weight matching and activation matching, applying permutations;
* :mod:`ramble.analysis.align.run` — a file's pair aligned, checked, held against S and stored.
"""

from ramble.analysis.align.matching import Matching, activation_matching, apply_permutation, weight_matching
from ramble.analysis.align.run import METHODS, AlignOutcome, align_file, answer, summary_lines
from ramble.analysis.align.spec import PermGroup, PermSpec, permutation_spec

__all__ = [
    "METHODS", "AlignOutcome", "Matching", "PermGroup", "PermSpec", "activation_matching", "align_file", "answer",
    "apply_permutation", "permutation_spec", "summary_lines", "weight_matching",
]
