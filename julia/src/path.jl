# Algorithm 1 of the paper: a path from W_a to W_b whose every segment is
# certified inside S (exactly, by certify.jl).  The
# Julia twin of python/ramble/core/path.py, ported step for step (same order of
# operations, decisions, counters, recorded points and reasons) so that
# `ramble.julia.crosscheck` can compare the two decision by decision.  Generic over
# the model: it uses only the interface of model.jl.
#
# Every move (GD epoch, elastic step, repaired elastic step, the final segment
# to W_b) is accepted only if `certify_segment!` proves its straight segment
# from the current point inside S; an uncertified move is refused like one
# that leaves S.  Accepted points are the polyline's vertices; with
# record_every == 1 every vertex is recorded (tagged with its iteration).
#
# One iteration, from the survey network w (always inside S):
#
# 1. `n_epochs` gradient-descent epochs, each candidate normalised by Eq. 4.
#    A candidate outside S ends the run as failed in the `:paper` variant
#    (Algorithm 1, line 8); in `:repair` the step is first made tangent to the
#    Eq. 4 surface (`tangent!`), loses any part pointing away from W_b and is
#    capped at the elastic step's length (`forward_limited!`), and a candidate
#    outside S is refused, ending this iteration's epochs.
# 2. The elastic step of Eq. 3, w + gamma (w_b - w), normalised by Eq. 4 (the
#    printed line 9 has the sign reversed; we follow Eq. 3).  Outside S it is
#    refused (`:paper`), or first repaired (`:repair`, see `repair`) and refused
#    only if the repair fails.
# 3. With record_every > 1, record w every `record_every` iterations.
#
# Arrival: once |w - w_b| <= tol |w_a - w_b| the segment w -> w_b is
# certified; if it is, w_b is appended and the path is complete.  Reaching `max_iterations`, or
# no 1 % improvement of the best distance in `patience` iterations, fails.

"Elastic step refused (decision code, as in Python's `ramble.core.path`)."
const ELASTIC_REFUSED = Int8(0)
"Elastic step accepted as is."
const ELASTIC_ACCEPTED = Int8(1)
"Elastic step accepted after repair."
const ELASTIC_REPAIRED = Int8(2)

const VARIANTS = (:paper, :repair)

"""
    PathConfig(; variant=:repair, gamma=0.01, n_epochs=1, lr=0.01,
               margin_target=0.2, repair_steps=10, tol=1e-3,
               max_iterations=20_000, patience=1000, record_every=1,
               weight_every=1, max_waypoints=10, escape=true, elastic_halvings=0,
               chord_iterations=1)

Settings of [`find_path`](@ref); same fields, order, defaults and checks (and
error messages) as Python's `ramble.core.path.PathConfig` (tested).
`max_waypoints` and `escape` are only carried along: waypoints and the norm
escape are Python's orchestration (`ramble.core.path.find_path_with_escape`), one
`find_path` per leg.  `elastic_halvings`: a refused elastic step is retried
at half the pull this many times (0: never).  `chord_iterations`: carried
along and checked like Python's; only 1 (every move certified as it is made)
runs here — the lazy chords of Python's driver pay off for networks, whose
certificates cost several GD epochs, not for the TCM's exact certificate, so
`find_path` refuses other values in one line.  `variant` is `:paper` or
`:repair` (a String is accepted too).  See `paper_config` for the paper's
settings.
"""
struct PathConfig
    variant::Symbol
    gamma::Float64
    n_epochs::Int
    lr::Float64
    margin_target::Float64
    repair_steps::Int
    tol::Float64
    max_iterations::Int
    patience::Int
    record_every::Int
    weight_every::Int
    max_waypoints::Int
    escape::Bool
    elastic_halvings::Int
    chord_iterations::Int
    function PathConfig(variant, gamma::Real, n_epochs::Integer, lr::Real, margin_target::Real,
                        repair_steps::Integer, tol::Real, max_iterations::Integer, patience::Integer,
                        record_every::Integer, weight_every::Integer, max_waypoints::Integer,
                        escape::Bool, elastic_halvings::Integer, chord_iterations::Integer)
        err = pathconfig_error(variant, gamma, n_epochs, lr, margin_target, repair_steps, tol, max_iterations,
                               patience, record_every, weight_every, max_waypoints, elastic_halvings, chord_iterations)
        err === nothing || throw(ConfigError(err))
        return new(Symbol(variant), gamma, n_epochs, lr, margin_target, repair_steps, tol, max_iterations, patience,
                   record_every, weight_every, max_waypoints, escape, elastic_halvings, chord_iterations)
    end
end

"""
    pathconfig_error(variant, gamma, n_epochs, lr, margin_target, repair_steps, tol,
                     max_iterations, patience, record_every, weight_every,
                     max_waypoints, elastic_halvings=0, chord_iterations=1) -> Union{Nothing,String}

The ConfigError message `PathConfig` would throw for these fields, or `nothing`.
"""
function pathconfig_error(variant, gamma, n_epochs, lr, margin_target, repair_steps, tol, max_iterations, patience,
                          record_every, weight_every, max_waypoints, elastic_halvings=0, chord_iterations=1)
    (variant isa Union{Symbol,AbstractString} && Symbol(variant) in VARIANTS) ||
        return "path variant must be one of paper, repair, got '$variant'"
    0.0 < gamma <= 1.0 || return "gamma must be in (0, 1], got $gamma"
    n_epochs >= 0 || return "N_epochs must be >= 0, got $n_epochs"
    (lr >= 0.0 && !isinf(lr)) || return "path learning rate must be a finite number >= 0, got $lr"
    margin_target > 0.0 || return "margin target must be > 0, got $margin_target"
    repair_steps >= 0 || return "repair steps must be >= 0, got $repair_steps"
    0.0 < tol < 1.0 || return "arrival tolerance must be in (0, 1), got $tol"
    max_iterations >= 1 || return "max iterations must be >= 1, got $max_iterations"
    patience >= 1 || return "patience must be >= 1, got $patience"
    record_every >= 1 || return "record_every must be >= 1, got $record_every"
    weight_every >= 1 || return "weight_every must be >= 1, got $weight_every"
    max_waypoints >= 0 || return "max waypoints must be >= 0, got $max_waypoints"
    elastic_halvings >= 0 || return "elastic halvings must be >= 0, got $elastic_halvings"
    chord_iterations >= 1 || return "chord iterations must be >= 1, got $chord_iterations"
    return nothing
end

PathConfig(; variant=:repair, gamma=0.01, n_epochs=1, lr=0.01, margin_target=0.2, repair_steps=10,
           tol=1e-3, max_iterations=20_000, patience=1000, record_every=1, weight_every=1, max_waypoints=10,
           escape=true, elastic_halvings=0, chord_iterations=1) =
    PathConfig(variant, gamma, n_epochs, lr, margin_target, repair_steps, tol, max_iterations, patience,
               record_every, weight_every, max_waypoints, escape, elastic_halvings, chord_iterations)

"""
    paper_config(; gamma=0.001, n_epochs=5, lr=0.1, kw...) -> PathConfig

Algorithm 1 as printed (with Eq. 3's sign), the paper's TCM settings.
"""
paper_config(; gamma=0.001, n_epochs=5, lr=0.1, max_waypoints=0, kw...) =
    PathConfig(; variant=:paper, gamma=gamma, n_epochs=n_epochs, lr=lr, max_waypoints=max_waypoints, kw...)

"""
    PathResult

A path and how it was obtained (Python's `ramble.core.path.PathResult`; arrays are
column-per-point here).  T points are recorded, first W_a, last W_b when
complete; `iteration`: iteration after which each was recorded (-1 for W_a,
`iterations` for the appended W_b); `distance`: 1 - |w - w_b| / |w_a - w_b|;
`train_loss`, `train_error` per point.  `weights`: P × Tk, the weights of the
points kept (every `weight_every`-th recorded point, and always the first and
last); `weight_index`: their 0-based row among the T points.  `decisions`:
elastic-step outcome per iteration (`ELASTIC_*`); `gd_refused`: refused GD
epochs per iteration; counters; wall time in seconds.  Certification (as
Python's): `segment_checks` segments submitted to the certifier,
`segments_certified` accepted, `cert_pieces` margin evaluations,
`cert_min_margin` smallest margin bound of an accepted segment (Inf if none),
`cert_seconds`; `arclength` (T): polyline length over all vertices at each
recorded point.
"""
struct PathResult
    status::String
    reason::String
    weights::Matrix{Float64}
    weight_index::Vector{Int}
    iteration::Vector{Int}
    distance::Vector{Float64}
    train_loss::Vector{Float64}
    train_error::Vector{Float64}
    decisions::Vector{Int8}
    gd_refused::Vector{Int8}
    iterations::Int
    elastic_accepted::Int
    elastic_repaired::Int
    elastic_refused::Int
    gd_accepted::Int
    gd_refused_total::Int
    segment_checks::Int
    wall_time::Float64
    arclength::Vector{Float64}
    segments_certified::Int
    cert_pieces::Int
    cert_min_margin::Float64
    cert_seconds::Float64
end

"`status == \"complete\"`."
iscomplete(r::PathResult) = r.status == "complete"

"""
    NormConstraint(w_a, w_b, groups)

Eq. 4: layer l of W_x has norm |W_b^l| - s_l |W_b^l - W_x^l|, with
s_l = (|W_b^l| - |W_a^l|) / |W_b^l - W_a^l| (clamped to [-1, 1] against
rounding; 0 where W_a and W_b coincide on the layer).  [`apply!`](@ref)
rescales each layer by the factor c that puts it exactly on that surface (a
quadratic in c), as Python's `ramble.core.path.NormConstraint`.
"""
struct NormConstraint
    groups::Vector{UnitRange{Int}}
    wb::Vector{Float64}
    nb::Vector{Float64}
    slope::Vector{Float64}
    t::Vector{Float64}   # scratch: targets of the last call
end

function NormConstraint(wa::AbstractVector{Float64}, wb::AbstractVector{Float64}, groups::AbstractVector{UnitRange{Int}})
    gs = collect(groups)
    nb = [rangenorm(wb, g) for g in gs]
    na = [rangenorm(wa, g) for g in gs]
    dab = [diffnorm(wb, wa, g) for g in gs]
    slope = [dab[l] > 0 ? clamp((nb[l] - na[l]) / dab[l], -1.0, 1.0) : 0.0 for l in eachindex(gs)]
    return NormConstraint(gs, Vector{Float64}(wb), nb, slope, zeros(length(gs)))
end

"""
    target(nc::NormConstraint, w) -> Vector

Eq. 4 norm of every layer at `w`.
"""
target(nc::NormConstraint, w::AbstractVector{Float64}) = copy(target!(nc, w))

function target!(nc::NormConstraint, w::AbstractVector{Float64})
    @inbounds for (l, g) in enumerate(nc.groups)
        nc.t[l] = nc.nb[l] - nc.slope[l] * diffnorm(nc.wb, w, g)
    end
    return nc.t
end

function rangedot(a::AbstractVector{Float64}, b::AbstractVector{Float64}, r::UnitRange{Int})
    s = 0.0
    @inbounds @simd for i in r
        s += a[i] * b[i]
    end
    return s
end

"""
    scale_factor(w, wb, g, nb, s) -> Float64 (NaN if none)

The factor c > 0 with |c x| = nb - s |b - c x| closest to 1, where x = w[g]
and b = wb[g] (Python's `NormConstraint.scale`, same tests and tolerances);
NaN when there is none.
"""
function scale_factor(w::AbstractVector{Float64}, wb::AbstractVector{Float64}, g::UnitRange{Int}, nb::Float64, s::Float64)
    r2 = rangedot(w, w, g)
    r2 == 0.0 && return NaN
    r = sqrt(r2)
    s == 0.0 && return nb / r
    bx = rangedot(wb, w, g)
    a = r2 * (1.0 - s * s)
    bb = r * nb - s * s * bx
    c0 = nb * nb * (1.0 - s * s)
    a <= 1e-12 * r2 && return NaN
    disc = bb * bb - a * c0
    disc < 0.0 && return NaN
    sq = sqrt(disc)
    best = NaN
    for c in ((bb - sq) / a, (bb + sq) / a)
        # squaring admitted roots of |c x| = nb + s |b - c x| too: keep the right sign
        if c > 0.0 && (c * r - nb) * s <= 1e-12 * nb * abs(s) && (isnan(best) || abs(c - 1.0) < abs(best - 1.0))
            best = c
        end
    end
    return best
end

"""
    apply!(out, nc::NormConstraint, w) -> Bool

Write `w` with every layer on the Eq. 4 surface into `out` (which may be
`w`); false if some layer cannot be put there (`out` is then partly written).
"""
function apply!(out::AbstractVector{Float64}, nc::NormConstraint, w::AbstractVector{Float64})
    out === w || copyto!(out, w)
    @inbounds for (l, g) in enumerate(nc.groups)
        c = scale_factor(w, nc.wb, g, nc.nb[l], nc.slope[l])
        isnan(c) && return false
        @simd for i in g
            out[i] = w[i] * c
        end
    end
    return true
end

"""
    apply(nc::NormConstraint, w) -> Vector or nothing

Allocating form of [`apply!`](@ref): `nothing` if some layer cannot be put on
the Eq. 4 surface.
"""
function apply(nc::NormConstraint, w::AbstractVector{Float64})
    out = similar(w)
    return apply!(out, nc, w) ? out : nothing
end

"""
    violation(nc::NormConstraint, w) -> Float64

Largest relative deviation of a layer norm from Eq. 4.
"""
function violation(nc::NormConstraint, w::AbstractVector{Float64})
    t = target!(nc, w)
    v = 0.0
    for (l, g) in enumerate(nc.groups)
        v = max(v, abs(rangenorm(w, g) - t[l]) / abs(t[l]))
    end
    return v
end

"""
    tangent!(delta, nc::NormConstraint, w, nbuf) -> delta

`delta` without its component normal to the Eq. 4 surface at `w`, layer by
layer, in place (Python's `NormConstraint.tangent`): the surface of layer l
is phi(x) = |x| + s |b - x| - |b| = 0 with normal
grad phi = x/|x| - s (b - x)/|b - x|.  `nbuf` (length P) is scratch.
"""
function tangent!(delta::AbstractVector{Float64}, nc::NormConstraint, w::AbstractVector{Float64},
                  nbuf::AbstractVector{Float64})
    @inbounds for (l, g) in enumerate(nc.groups)
        s = nc.slope[l]
        nx = rangenorm(w, g)
        nx == 0.0 && continue
        for i in g
            nbuf[i] = w[i] / nx
        end
        d = diffnorm(nc.wb, w, g)
        if d > 0.0 && s != 0.0
            for i in g
                nbuf[i] = nbuf[i] - (s * (nc.wb[i] - w[i])) / d
            end
        end
        nn = rangedot(nbuf, nbuf, g)
        if nn > 0.0
            f = rangedot(delta, nbuf, g) / nn
            for i in g
                delta[i] = delta[i] - f * nbuf[i]
            end
        end
    end
    return delta
end

"""
    forward_limited!(delta, toward, gamma) -> delta

The repair variant's GD step (Python's `ramble.core.path.forward_limited`), in
place: the part of `delta` pointing away from W_b (`toward = w_b - w`) is
removed, and the step is capped at the elastic step's length
`gamma |toward|`.
"""
function forward_limited!(delta::AbstractVector{Float64}, toward::AbstractVector{Float64}, gamma::Float64)
    r = 1:length(delta)
    d = rangedot(delta, toward, r)
    if d < 0
        f = d / rangedot(toward, toward, r)
        @inbounds @simd for i in r
            delta[i] = delta[i] - f * toward[i]
        end
    end
    cap = gamma * rangenorm(toward, r)
    size = rangenorm(delta, r)
    if size > cap
        f = cap / size
        @inbounds @simd for i in r
            delta[i] = delta[i] * f
        end
    end
    return delta
end

# Work buffers of one find_path call (sized for all M samples; views of their
# leading blocks are BLAS/LAPACK-compatible strided matrices).
struct PathWork
    m::Vector{Float64}        # M margins
    G::Matrix{Float64}        # P × M margin gradients (first nidx columns used)
    gg::Matrix{Float64}       # M × M Gram matrix (leading nidx × nidx block used)
    chol::Vector{Float64}     # M² scratch for the Cholesky factor
    rhs::Vector{Float64}      # M
    idx::Vector{Int}          # M
    step::Vector{Float64}     # P
    c::Vector{Float64}        # P repair iterate
    tmp::Vector{Float64}      # P
end

PathWork(P::Int, M::Int) = PathWork(zeros(M), zeros(P, M), zeros(M, M), zeros(M * M), zeros(M), zeros(Int, M),
                                    zeros(P), zeros(P), zeros(P))

"""
    repair(model, w, nc, margin_target, steps) -> Vector or nothing

Move a candidate outside S back into S by projecting onto its active
constraints.  Each round takes the samples whose margin is below
`margin_target` (the broken ones and those about to break), linearises their
margins `m + G'd` and takes the minimum-norm step `d = G (G'G)^+ (target - m)`,
then re-applies Eq. 4.  Python solves for `(G'G)^+ (target - m)` with LAPACK
gelsd; here [`gram_solve!`](@ref) gives the same solution, by Cholesky when a
condition bound proves gelsd would drop no singular value.  Returns the first candidate inside S, or `nothing` after
`steps` rounds (or if a broken sample has a zero margin gradient, e.g. all TCM
units saturated, or Eq. 4 has no positive target).
"""
function repair(model, w::AbstractVector{Float64}, nc::NormConstraint, margin_target::Real, steps::Integer)
    out = Vector{Float64}(undef, length(w))
    ws = PathWork(length(w), length(margins(model, w)))
    return repair!(out, model, w, nc, Float64(margin_target), Int(steps), ws) ? out : nothing
end

function repair!(out::Vector{Float64}, model, w::AbstractVector{Float64}, nc::NormConstraint,
                 margin_target::Float64, steps::Int, ws::PathWork)
    c = ws.c
    copyto!(c, w)
    m = ws.m
    P = length(c)
    for _ in 1:steps
        margins!(m, model, c)
        if allpositive(m)
            copyto!(out, c)
            return true
        end
        nidx = 0
        @inbounds for mu in eachindex(m)
            if m[mu] < margin_target
                nidx += 1
                ws.idx[nidx] = mu
            end
        end
        idx = view(ws.idx, 1:nidx)
        G = view(ws.G, :, 1:nidx)
        margin_grads!(G, model, c, idx)
        gg = view(ws.gg, 1:nidx, 1:nidx)
        margin_gram!(gg, model, c, idx, G)
        @inbounds for r in 1:nidx
            if m[idx[r]] <= 0.0 && gg[r, r] == 0.0
                return false
            end
        end
        rhs = Vector{Float64}(undef, nidx)
        @inbounds for r in 1:nidx
            rhs[r] = margin_target - m[idx[r]]
        end
        coef = gram_solve!(gg, ws.chol, rhs)
        mul!(ws.step, G, coef)
        @inbounds @simd for i in 1:P
            ws.tmp[i] = c[i] + ws.step[i]
        end
        apply!(c, nc, ws.tmp) || return false
    end
    if contains(model, c)
        copyto!(out, c)
        return true
    end
    return false
end

"""
    gram_solve!(gg, cholbuf, rhs) -> coef

`pinv(gg) * rhs` for the symmetric positive semidefinite n×n `gg`, as
`torch.linalg.lstsq(gg, rhs, driver="gelsd")` computes it (SVD, singular
values below `eps * n * σmax` dropped).  Fast path: Cholesky `gg = R'R`, then
`R⁻¹` (LAPACK potrf, trtri); since ‖gg⁻¹‖₂ = ‖R⁻¹‖₂² ≤ ‖R⁻¹‖_F² and
‖gg‖₂ ≤ ‖gg‖₁, the product ‖gg‖₁ ‖R⁻¹‖_F² bounds the condition number; when it
is a factor 100 below gelsd's cut-off `1/(eps n)`, gelsd would drop nothing
and `R⁻¹ R⁻ᵀ rhs` is the same solution up to rounding, ~30 times faster.
Otherwise (rank-deficient or ill-conditioned) gelsd with Python's rcond.
`cholbuf` (length ≥ n²) is scratch; `gg` may be overwritten; `rhs` may be
returned.
"""
function gram_solve!(gg::AbstractMatrix{Float64}, cholbuf::Vector{Float64}, rhs::Vector{Float64})
    n = size(gg, 1)
    anorm = 0.0
    @inbounds for j in 1:n
        s = 0.0
        for i in 1:n
            s += abs(gg[i, j])
        end
        anorm = max(anorm, s)
    end
    GC.@preserve cholbuf begin
        R = unsafe_wrap(Array, pointer(cholbuf), (n, n))   # contiguous n×n scratch
        copyto!(R, gg)
        _, info = LAPACK.potrf!('U', R)
        if info == 0
            LAPACK.trtri!('U', 'N', R)                      # R := R⁻¹
            fro2 = 0.0
            @inbounds for j in 1:n, i in 1:j
                fro2 += R[i, j]^2
            end
            if anorm * fro2 * 100.0 * eps(Float64) * n < 1.0
                BLAS.trmv!('U', 'T', 'N', R, rhs)           # R⁻ᵀ rhs
                BLAS.trmv!('U', 'N', 'N', R, rhs)           # R⁻¹ R⁻ᵀ rhs
                return rhs
            end
        end
    end
    coef, _ = LAPACK.gelsd!(gg, rhs, eps(Float64) * n)
    return coef
end

mutable struct Counters
    acc::Int
    rep::Int
    ref::Int
    gd_acc::Int
    gd_ref::Int
    seg::Int
    cert::Int
    pieces::Int
    cert_seconds::Float64
    min_bound::Float64
    arc::Float64       # polyline length so far
    dirty::Bool        # the current point is not recorded yet
end

# Recorded points and counters of one run (no closures over reassigned
# variables: those would be boxed and make the hot loop type-unstable).
struct PathLog
    rec_iter::Vector{Int}
    dist::Vector{Float64}
    arc::Vector{Float64}
    loss::Vector{Float64}
    err::Vector{Float64}
    kept::Vector{Vector{Float64}}
    kept_rows::Vector{Int}
    lastw::Vector{Float64}
    weight_every::Int
    decisions::Vector{Int8}
    gd_ref::Vector{Int8}
    counts::Counters
end

PathLog(P::Int, cfg::PathConfig) =
    PathLog(Int[], Float64[], Float64[], Float64[], Float64[], Vector{Float64}[], Int[], zeros(P), cfg.weight_every,
            zeros(Int8, cfg.max_iterations), zeros(Int8, cfg.max_iterations),
            Counters(0, 0, 0, 0, 0, 0, 0, 0, 0.0, Inf, 0.0, false))

# Python's `record`: metrics of every recorded point, weights of every
# weight_every-th one.
function record!(plog::PathLog, model, w::AbstractVector{Float64}, it::Int, wb::Vector{Float64}, d_ab::Float64)
    row = length(plog.rec_iter)
    push!(plog.rec_iter, it)
    push!(plog.dist, d_ab > 0 ? 1.0 - diffnorm(w, wb) / d_ab : 1.0)
    push!(plog.arc, plog.counts.arc)
    e = evaluate(model, w)
    push!(plog.loss, e.loss)
    push!(plog.err, e.error)
    if row % plog.weight_every == 0
        push!(plog.kept, copy(w))
        push!(plog.kept_rows, row)
    end
    copyto!(plog.lastw, w)
    plog.counts.dirty = false
    return nothing
end

# Python's `certified`: certify the move w_from -> w_to and count it either way.
function certified!(plog::PathLog, cw::CertWork, model, w_from::AbstractVector{Float64}, w_to::AbstractVector{Float64})
    cert = certify_segment!(cw, model, w_from, w_to)
    c = plog.counts
    c.seg += 1
    c.pieces += cert.pieces
    c.cert_seconds += cert.seconds
    if cert.certified
        c.cert += 1
        c.min_bound = min(c.min_bound, cert.margin_bound)
    end
    return cert.certified
end

# Python's `moved`: a certified move w_from -> w_to is a new vertex (recorded when every vertex is).
function moved!(plog::PathLog, model, w_from::AbstractVector{Float64}, w_to::AbstractVector{Float64}, it::Int,
                vertex_rows::Bool, ref_b::Vector{Float64}, ref_d::Float64)
    plog.counts.arc += diffnorm(w_to, w_from)
    plog.counts.dirty = true
    vertex_rows && record!(plog, model, w_to, it, ref_b, ref_d)
    return nothing
end

function finish(plog::PathLog, wb::Vector{Float64}, start::UInt64, status::String, reason::String, n_iter::Int)
    T = length(plog.rec_iter)
    if plog.kept_rows[end] != T - 1
        push!(plog.kept, copy(plog.lastw))
        push!(plog.kept_rows, T - 1)
    end
    P = length(wb)
    W = Matrix{Float64}(undef, P, length(plog.kept))
    for (t, p) in enumerate(plog.kept)
        copyto!(view(W, :, t), p)
    end
    c = plog.counts
    return PathResult(status, reason, W, copy(plog.kept_rows), copy(plog.rec_iter), copy(plog.dist), copy(plog.loss),
                      copy(plog.err), plog.decisions[1:n_iter], plog.gd_ref[1:n_iter], n_iter, c.acc, c.rep, c.ref,
                      c.gd_acc, c.gd_ref, c.seg, (time_ns() - start) / 1e9, copy(plog.arc), c.cert, c.pieces,
                      c.min_bound, c.cert_seconds)
end

"""
    find_path(model, w_a, w_b, cfg::PathConfig=PathConfig(); progress=nothing, frame=nothing) -> PathResult

Draw a path from `w_a` to `w_b` inside S (Algorithm 1; see the top of this
file).  Both endpoints must be in S and have the same length, else a
[`ConfigError`](@ref).  `progress(iteration, distance)` is called after every
iteration when given (iterations 0-based, as in Python); if it returns
`false` the run stops there with status `"interrupted"` (the Python bridge
uses this to let Ctrl-C through; Python never sees that status).
`frame = (W_A, W_B)` measures `distance` against another pair of endpoints (a
leg of a longer path), as Python's `frame`.

On a complete path every segment between consecutive vertices was certified
inside S by `certify_segment!` (with `record_every == 1` every vertex is a
recorded point), every vertex satisfies Eq. 4, the first is `w_a` and the
last is `w_b`.
"""
function find_path(model, w_a::AbstractVector{Float64}, w_b::AbstractVector{Float64},
                   cfg::PathConfig=PathConfig(); progress=nothing, frame=nothing)
    err = endpoints_error(model, w_a, w_b)
    err === nothing || throw(ConfigError(err))
    cfg.chord_iterations == 1 || throw(ConfigError("chord iterations must be 1 on the Julia backend (it certifies every move), got $(cfg.chord_iterations); lazy chords run on --backend python"))
    ref_a, ref_b = frame === nothing ? (w_a, w_b) : frame
    return _find_path(model, Vector{Float64}(w_a), Vector{Float64}(w_b), cfg, progress, time_ns(),
                      Vector{Float64}(ref_b), diffnorm(ref_b, ref_a))
end

"""
    endpoints_error(model, w_a, w_b) -> Union{Nothing,String}

The ConfigError message `find_path` would throw for these endpoints (not of
one length, or not solutions), or `nothing`.
"""
function endpoints_error(model, w_a::AbstractVector{Float64}, w_b::AbstractVector{Float64})
    length(w_a) == length(w_b) ||
        return "endpoints must be flat vectors of one length, got lengths $(length(w_a)) and $(length(w_b))"
    contains(model, w_a) || return "W_a is not a solution: it misclassifies training samples"
    contains(model, w_b) || return "W_b is not a solution: it misclassifies training samples"
    return nothing
end

function _find_path(model, wa::Vector{Float64}, wb::Vector{Float64}, cfg::PathConfig, progress, start::UInt64,
                    ref_b::Vector{Float64}, ref_d::Float64)
    P = length(wa)
    nc = NormConstraint(wa, wb, groups(model))
    d_ab = diffnorm(wb, wa)
    ws = PathWork(P, length(margins(model, wa)))
    cw = CertWork(model)
    plog = PathLog(P, cfg)
    c = plog.counts
    vertex_rows = cfg.record_every == 1

    w = copy(wa)
    record!(plog, model, w, -1, ref_b, ref_d)
    d_ab == 0.0 && return finish(plog, wb, start, "complete", "", 0)

    cand = similar(w)
    tmp = similar(w)
    fixed = similar(w)
    delta = similar(w)
    toward = similar(w)
    nbuf = similar(w)
    best = 1.0
    best_iter = 0
    last_failed_check = Inf
    for it in 0:cfg.max_iterations-1
        # 1. gradient descent
        for _ in 1:cfg.n_epochs
            cfg.lr == 0.0 && break
            descent_step!(tmp, model, w, cfg.lr)
            @inbounds @simd for i in 1:P
                delta[i] = tmp[i] - w[i]
            end
            if cfg.variant === :repair
                tangent!(delta, nc, w, nbuf)
                @inbounds @simd for i in 1:P
                    toward[i] = wb[i] - w[i]
                end
                forward_limited!(delta, toward, cfg.gamma)
            end
            @inbounds @simd for i in 1:P
                tmp[i] = w[i] + delta[i]
            end
            if apply!(cand, nc, tmp) && contains(model, cand) && certified!(plog, cw, model, w, cand)
                moved!(plog, model, w, cand, it, vertex_rows, ref_b, ref_d)
                w, cand = cand, w
                c.gd_acc += 1
                continue
            end
            if cfg.variant === :paper
                c.dirty && record!(plog, model, w, it, ref_b, ref_d)
                return finish(plog, wb, start, "failed",
                              "a gradient-descent step left S at iteration $it (paper: eta, gamma not properly set)", it + 1)
            end
            c.gd_ref += 1
            plog.gd_ref[it+1] += Int8(1)
            break
        end
        # 2. elastic step toward W_b (Eq. 3; the printed line 9 has the sign reversed).
        # A refused step is retried at half the pull, up to elastic_halvings times
        # (Python's find_path): a shorter pull breaks fewer samples.
        g = cfg.gamma
        code = ELASTIC_REFUSED
        for _ in 0:cfg.elastic_halvings
            @inbounds @simd for i in 1:P
                tmp[i] = w[i] + g * (wb[i] - w[i])
            end
            ok = apply!(cand, nc, tmp)
            if ok && contains(model, cand) && certified!(plog, cw, model, w, cand)
                code = ELASTIC_ACCEPTED
                break
            end
            if cfg.variant === :repair && ok && cfg.repair_steps > 0 &&
               repair!(fixed, model, cand, nc, cfg.margin_target, cfg.repair_steps, ws) &&
               certified!(plog, cw, model, w, fixed)
                code = ELASTIC_REPAIRED
                break
            end
            g *= 0.5
        end
        plog.decisions[it+1] = code
        if code == ELASTIC_ACCEPTED
            moved!(plog, model, w, cand, it, vertex_rows, ref_b, ref_d)
            w, cand = cand, w
            c.acc += 1
        elseif code == ELASTIC_REPAIRED
            moved!(plog, model, w, fixed, it, vertex_rows, ref_b, ref_d)
            w, fixed = fixed, w
            c.rep += 1
        else
            c.ref += 1
        end
        !vertex_rows && (it + 1) % cfg.record_every == 0 && record!(plog, model, w, it, ref_b, ref_d)
        rel = diffnorm(w, wb) / d_ab
        if progress !== nothing && progress(it, 1.0 - rel) === false
            c.dirty && record!(plog, model, w, it, ref_b, ref_d)
            return finish(plog, wb, start, "interrupted", "stopped by the progress callback", it + 1)
        end
        # 3. arrival
        if rel <= cfg.tol && rel <= 0.5 * last_failed_check
            if certified!(plog, cw, model, w, wb)
                c.dirty && record!(plog, model, w, it, ref_b, ref_d)
                c.arc += diffnorm(wb, w)
                record!(plog, model, wb, it + 1, ref_b, ref_d)
                return finish(plog, wb, start, "complete", "", it + 1)
            end
            last_failed_check = rel
        end
        if rel < best * 0.99
            best, best_iter = rel, it
        elseif it - best_iter >= cfg.patience
            c.dirty && record!(plog, model, w, it, ref_b, ref_d)
            return finish(plog, wb, start, "failed",
                          "stalled: no 1% progress toward W_b in $(cfg.patience) iterations, $(fmt3g(rel)) of the distance left", it + 1)
        end
    end
    c.dirty && record!(plog, model, w, cfg.max_iterations - 1, ref_b, ref_d)
    rel = diffnorm(w, wb) / d_ab
    return finish(plog, wb, start, "failed",
                  "iteration limit $(cfg.max_iterations) reached, $(fmt3g(rel)) of the distance left", cfg.max_iterations)
end

"""
    straight_line(model, w_a, w_b, n_points=101) -> (alpha, train_loss, train_error)

Train loss and error along l_ab(t) = W_a + t (W_b - W_a) (Eq. 2) at
`n_points` evenly spaced t in [0, 1] (numpy.linspace's values).
"""
function straight_line(model, wa::AbstractVector{Float64}, wb::AbstractVector{Float64}, n_points::Integer=101)
    n_points >= 2 || throw(ConfigError("the straight line needs at least 2 points, got $n_points"))
    step = 1.0 / (n_points - 1)
    alpha = [Float64(i) * step for i in 0:n_points-1]
    alpha[end] = 1.0
    tl, te = straight_line_at(model, wa, wb, alpha)
    return (alpha=alpha, train_loss=tl, train_error=te)
end

"Loss and error at `w_a + a (w_b - w_a)` for each `a` in `alpha`."
function straight_line_at(model, wa::AbstractVector{Float64}, wb::AbstractVector{Float64}, alpha::AbstractVector{Float64})
    length(wa) == length(wb) ||
        throw(ConfigError("endpoints must be flat vectors of one length, got lengths $(length(wa)) and $(length(wb))"))
    buf = similar(wa, Float64)
    tl = zeros(length(alpha))
    te = zeros(length(alpha))
    for (t, a) in enumerate(alpha)
        @inbounds @simd for i in eachindex(buf)
            buf[i] = wa[i] + a * (wb[i] - wa[i])
        end
        e = evaluate(model, buf)
        tl[t] = e.loss
        te[t] = e.error
    end
    return tl, te
end
