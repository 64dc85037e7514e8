"""
    Ramble

Julia side of ramble: the Tree Committee Machine (TCM, paper Eq. 7) with
analytic derivatives, full-batch gradient descent to a solution (`gd_solve`),
and Algorithm 1 of Tartaglione & Grangetto (ICIAP 2019), `find_path`, which
draws a path between two solutions that never leaves the solution set S.

It mirrors the Python package `ramble` step for step (`python/ramble/models/tcm.py`,
`training.py`, `path.py`), so that `ramble.julia.crosscheck` can compare the two
languages decision by decision.  Only Base and the standard library are used
(LinearAlgebra, Random, Printf); the code runs on Julia 1.5 and on current
releases.

Entry points, one per task:

* `TCM(inputs, labels, K)` — a TCM bound to its training set (inputs N×M,
  column `mu` is pattern `mu`; labels ±1 of length M).
* `loss_and_grad!`, `margins`, `evaluate`, `hessian`, `hessian_spectrum` —
  the model's maths.
* `gd_solve(model, w0, TrainConfig(...))` — find a solution from `w0`.
* `find_path(model, w_a, w_b, PathConfig(...))` — Algorithm 1.
* `straight_line(model, w_a, w_b, n)` — loss/error along Eq. 2.
* `certify_segment(model, w0, w1)` — exact proof that a segment lies in S.
* `Ramble.Bridge` — C-callable wrappers used by the Python bridge.

Load it with `include("julia/src/Ramble.jl")` (it is not a registered package;
`julia --project=<repo>` activates its Project.toml for the tests).
"""
module Ramble

using LinearAlgebra
using Printf
using Random

export ConfigError, TCM, fields, committee, loss, loss_and_grad!, loss_and_grad,
       margins, margins!, margin_grads, margin_grads!, descent_step, descent_step!,
       evaluate, Evaluation, hessian, hessian!, hessian_spectrum, groups,
       TrainConfig, SolveOutcome, gd_solve,
       PathConfig, PathResult, NormConstraint, repair, find_path, straight_line,
       ELASTIC_REFUSED, ELASTIC_ACCEPTED, ELASTIC_REPAIRED,
       SegmentCertificate, CertWork, certify_segment, certify_segment!

include("model.jl")
include("tcm.jl")
include("training.jl")
include("certify.jl")
include("path.jl")
include("bridge.jl")

end # module
