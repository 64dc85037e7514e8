"""ramble: zero-error paths between two solutions of one classification problem.

After Tartaglione & Grangetto, "Take a Ramble into Solution Spaces for
Classification Problems in Neural Networks" (ICIAP 2019).
"""

__version__ = "0.1.0"
