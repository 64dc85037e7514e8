"""Julia inside this Python process: the bridge to the ``Ramble`` module and the Julia TCM backend.

* :mod:`ramble.julia.bridge` — finding Julia, starting it once (juliacall or embedded libjulia), calling it;
* :mod:`ramble.julia.backend` — :class:`JuliaTCM`, the TCM backend of ``Ramble.jl``;
* :mod:`ramble.julia.crosscheck` — the same TCM computations in Julia and Python, compared.

The Julia sources ship in ``ramble/julia_src`` (a link to ``julia/src`` in a checkout).
"""
