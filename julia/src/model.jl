# The interface between a model and the algorithms (gd_solve, find_path,
# straight_line), the Julia twin of python/ramble/core/problem.py.
#
# A model (a network bound to its training set) provides:
#
#   margins(model, w)              -> Vector, per-sample margins (correct iff > 0)
#   margin_grads(model, w, idx)    -> P × length(idx) matrix, column r = d margin[idx[r]] / dw
#   descent_step(model, w, lr)     -> new vector, one gradient-descent "epoch" from w
#   Base.contains(model, w)        -> true iff every margin is > 0
#   evaluate(model, w)             -> Evaluation(loss, error)
#   groups(model)                  -> Vector{UnitRange{Int}}, the "layers" of Eq. 4
#
# The algorithms call the in-place forms `margins!`, `margin_grads!`,
# `descent_step!` and `margin_gram!`; their fallbacks below go through the
# allocating forms (or BLAS), so a new model only needs the six functions above
# (the TCM implements the in-place forms directly, without allocating).  Weight vectors are flat Vector{Float64};
# no method modifies its `w` argument.

"""
    ConfigError(msg)

An input the user can fix: a bad size, data that is not ±1, a setting out of
range, an endpoint that is not a solution.  `ramble`'s Python bridge turns it
into `ramble.errors.ConfigError` with the same message.
"""
struct ConfigError <: Exception
    msg::String
end
Base.showerror(io::IO, e::ConfigError) = print(io, e.msg)

"""
    Evaluation(loss, error)

Mean per-sample training loss (nats) and fraction of misclassified samples.
"""
struct Evaluation
    loss::Float64
    error::Float64
end

"""
    margins(model, w) -> Vector{Float64}

Per-sample margins at `w`; sample `mu` is classified correctly iff
`margins[mu] > 0` (a zero margin is an error).
"""
function margins end

"""
    margin_grads(model, w, idx) -> Matrix{Float64}

Gradients of the margins of the samples `idx` with respect to `w`, one per
column: size `(length(w), length(idx))` (the transpose, in memory the same
layout, of the Python `(len(idx), P)` array).
"""
function margin_grads end

"""
    descent_step(model, w, lr) -> Vector{Float64}

One full-batch gradient-descent step `w - lr * ∇L(w)` (a new vector).
"""
function descent_step end

"""
    evaluate(model, w) -> Evaluation

Training loss and error at `w`.
"""
function evaluate end

"""
    groups(model) -> Vector{UnitRange{Int}}

Ranges of the flat weight vector, one per layer, to which Eq. 4 is applied.
"""
function groups end

"""
    margins!(out, model, w) -> out

In-place [`margins`](@ref); the fallback copies the allocating form.
"""
margins!(out::AbstractVector{Float64}, model, w::AbstractVector{Float64}) = copyto!(out, margins(model, w))

"""
    margin_grads!(G, model, w, idx) -> G

In-place [`margin_grads`](@ref) into `G` of size `(length(w), length(idx))`.
"""
margin_grads!(G::AbstractMatrix{Float64}, model, w::AbstractVector{Float64}, idx::AbstractVector{<:Integer}) =
    copyto!(G, margin_grads(model, w, idx))

"""
    margin_gram!(gg, model, w, idx, G) -> gg

`G'G` for `G = margin_grads(model, w, idx)` (already computed and passed in):
the repair's Gram matrix.  The fallback is the BLAS product; a model may
provide a faster exact form (the TCM does).
"""
margin_gram!(gg::AbstractMatrix{Float64}, model, w::AbstractVector{Float64}, idx::AbstractVector{<:Integer},
             G::AbstractMatrix{Float64}) = mul!(gg, transpose(G), G)

"""
    descent_step!(out, model, w, lr) -> out

In-place [`descent_step`](@ref); `out` may be `w` itself.
"""
descent_step!(out::AbstractVector{Float64}, model, w::AbstractVector{Float64}, lr::Real) =
    copyto!(out, descent_step(model, w, lr))

# Small numerical helpers shared by the files below.

"All entries of `m` strictly positive (NaN counts as not positive)."
function allpositive(m::AbstractVector{Float64})
    @inbounds for x in m
        x > 0.0 || return false
    end
    return true
end

"Euclidean norm of `a[r]` for the index range `r`."
function rangenorm(a::AbstractVector{Float64}, r::UnitRange{Int})
    s = 0.0
    @inbounds @simd for i in r
        s += a[i] * a[i]
    end
    return sqrt(s)
end

"Euclidean norm of `a[r] - b[r]` without allocating."
function diffnorm(a::AbstractVector{Float64}, b::AbstractVector{Float64}, r::UnitRange{Int})
    s = 0.0
    @inbounds @simd for i in r
        d = a[i] - b[i]
        s += d * d
    end
    return sqrt(s)
end
diffnorm(a::AbstractVector{Float64}, b::AbstractVector{Float64}) = diffnorm(a, b, 1:length(a))

"Median as numpy computes it (mean of the two middle values for even length)."
function npmedian(x::AbstractVector{Float64})
    s = sort(x)
    n = length(s)
    n == 0 && return NaN
    h = n ÷ 2
    return isodd(n) ? s[h+1] : (s[h] + s[h+1]) / 2
end

"`x` formatted like Python's `f\"{x:.3g}\"` (C's `%.3g`)."
fmt3g(x::Real) = @sprintf("%.3g", x)
