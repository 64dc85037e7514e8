# The Tree Committee Machine (paper Eq. 7) with analytic derivatives: the Julia
# twin of python/ramble/models/tcm.py (whose module docstring is the specification).
#
# Weights: a flat vector w of length N; hidden unit k (1-based here) owns
# w[(k-1)n+1 : k n], n = N/K, aligned with its inputs xi[(k-1)n+1 : k n].
#
#   h_k(xi)  = sum_j w[(k-1)n + j] xi[(k-1)n + j]
#   S(xi)    = sum_k htanh(h_k(xi))            in [-K, K]
#   margin   = sigma * S                       (correct iff > 0)
#   L(w)     = mean_mu softplus(-2 sigma_mu S_mu)   (= BCE of (1 + tanh S)/2)
#
# Kink convention: htanh'(h) = 1 on the open interval (-1, 1) and 0 elsewhere,
# h = ±1 included (PyTorch's convention); htanh'' = 0 (the Dirac masses at the
# kinks are dropped).  With it the exact Hessian, almost everywhere, is
#
#   H = (1/M) sum_mu 4 s_mu (1 - s_mu) g_mu g_mu',  s_mu = logistic(2 sigma_mu S_mu),
#   g_mu = dS_mu/dw,  g_mu[(k-1)n+j] = htanh'(h_k) xi_mu[(k-1)n+j],
#
# because d²/dS² softplus(-2 sigma S) = 4 s (1 - s) (sigma² = 1) and S is
# piecewise linear in w.

htanh(x::Float64) = x < -1.0 ? -1.0 : (x > 1.0 ? 1.0 : x)
"htanh'(x): 1 on the open interval (-1, 1), 0 elsewhere (kinks included)."
htanh_slope(x::Float64) = (-1.0 < x) & (x < 1.0) ? 1.0 : 0.0

"log(1 + exp(x)) without overflow or loss of precision."
softplus(x::Float64) = x > 0.0 ? x + log1p(exp(-x)) : log1p(exp(x))

"1 / (1 + exp(-x)) without overflow."
function logistic(x::Float64)
    if x >= 0.0
        return 1.0 / (1.0 + exp(-x))
    else
        e = exp(x)
        return e / (1.0 + e)
    end
end

"""
    TCM(inputs, labels, K)

A tree committee machine with `K` hidden units bound to a training set.

`inputs` is N×M with pattern `mu` in column `mu` (the memory layout of a
row-major `(M, N)` NumPy array), entries ±1; `labels` has length M, entries ±1.
Throws [`ConfigError`](@ref) unless N, K ≥ 1, K divides N, M ≥ 1, the label
count matches and every value is ±1.

The object keeps preallocated work buffers and caches the fields of the last
weight vector it saw (compared bit for bit), so it is cheap to call
`margins` and then `descent_step` at the same point.  Not thread-safe: use one
`TCM` per task.
"""
struct TCM
    N::Int
    K::Int
    n::Int
    M::Int
    Xt::Vector{Matrix{Int8}}  # K blocks, M × n: Xt[k][mu, j] = xi^mu_{(k-1)n+j} (columns contiguous)
    sigma::Vector{Float64}       # M labels
    h::Matrix{Float64}           # M × K fields of the cached weights
    S::Vector{Float64}           # M committee sums of the cached weights
    c::Vector{Float64}           # M: dL/dS
    ck::Vector{Float64}          # M: dL/dh_k
    grad::Vector{Float64}        # N: last gradient
    marg::Vector{Float64}        # M: margins scratch
    wcache::Vector{Float64}      # N: weights of the cached fields
    cached::Base.RefValue{Bool}
    hessG::Base.RefValue{Matrix{Float64}}  # M × N, allocated on first Hessian
    gram::Base.RefValue{Vector{Matrix{Int16}}}  # K blocks M × M: xi_k^mu · xi_k^nu, on first `margin_gram!`
    ak::Matrix{Float64}          # M × K scratch
    ex::Vector{Float64}          # M: exp(-|2 sigma S|) of the cached weights, when `exvalid`
    exvalid::Base.RefValue{Bool}
end

"""
    shape_error(N, K) -> Union{Nothing,String}

The ConfigError message for an invalid TCM shape (N, K ≥ 1 and K divides N),
or `nothing`.  The `*_error` checkers return messages instead of throwing so
that the bridge can report bad input without raising a Julia exception.
"""
function shape_error(N::Integer, K::Integer)
    N >= 1 || return "N must be a positive integer, got $N"
    K >= 1 || return "K must be a positive integer, got $K"
    N % K == 0 || return "K=$K must divide N=$N (each hidden unit sees N/K inputs)"
    return nothing
end

"""
    tcm_data_error(inputs, labels, K) -> Union{Nothing,String}

The ConfigError message `TCM(inputs, labels, K)` would throw, or `nothing`.
"""
function tcm_data_error(inputs::AbstractMatrix{<:Real}, labels::AbstractVector{<:Real}, K::Integer)
    N, M = size(inputs)
    err = shape_error(N, K)
    err === nothing || return err
    M >= 1 || return "M must be a positive integer, got $M"
    length(labels) == M || return "got $(length(labels)) labels for M=$M patterns"
    @inbounds for mu in 1:M, i in 1:N
        x = inputs[i, mu]
        (x == 1 || x == -1) || return "inputs must be ±1, found $x in pattern $(mu - 1), input $(i - 1) (0-based)"
    end
    @inbounds for mu in 1:M
        y = labels[mu]
        (y == 1 || y == -1) || return "labels must be ±1, found $y for pattern $(mu - 1) (0-based)"
    end
    return nothing
end

function TCM(inputs::AbstractMatrix{<:Real}, labels::AbstractVector{<:Real}, K::Integer)
    err = tcm_data_error(inputs, labels, K)
    err === nothing || throw(ConfigError(err))
    N, M = size(inputs)
    n = N ÷ K
    Xt = [Matrix{Int8}(transpose(inputs[(k-1)*n+1:k*n, :])) for k in 1:K]
    sigma = Vector{Float64}(labels)
    return TCM(N, Int(K), n, M, Xt, sigma, zeros(M, K), zeros(M), zeros(M), zeros(M), zeros(N),
               zeros(M), zeros(N), Ref(false), Ref(zeros(0, 0)), Ref(Matrix{Int16}[]), zeros(M, K), zeros(M), Ref(false))
end

"""
    groups(m::TCM) -> [1:N]

The TCM is one layer for Eq. 4.
"""
groups(m::TCM) = [1:m.N]

unitrange(m::TCM, k::Int) = (k-1)*m.n+1:k*m.n

function checkw(m::TCM, w::AbstractVector)
    length(w) == m.N || throw(ConfigError("weights must have length N=$(m.N), got $(length(w))"))
    return nothing
end

function sameweights(a::Vector{Float64}, b::AbstractVector{Float64})
    @inbounds for i in eachindex(a, b)
        a[i] === b[i] || return false
    end
    return true
end

"""
    fields!(m::TCM, w) -> m.h

Hidden fields h (M × K) at `w`, and the committee sums in `m.S`; reused when
`w` equals (bit for bit) the weights of the previous call.  The returned
matrix is the model's buffer: copy it to keep it.
"""
function fields!(m::TCM, w::AbstractVector{Float64})
    checkw(m, w)
    if m.cached[] && sameweights(m.wcache, w)
        return m.h
    end
    m.cached[] = false
    m.exvalid[] = false
    h, S = m.h, m.S
    M, n = m.M, m.n
    # h[:, k] = Xt_k * w_k, accumulated column by column (contiguous, SIMD over patterns)
    @inbounds for k in 1:m.K
        Xk = m.Xt[k]
        off = (k - 1) * n
        for mu in 1:M
            h[mu, k] = 0.0
        end
        for j in 1:n
            wj = w[off+j]
            @simd for mu in 1:M
                h[mu, k] += Xk[mu, j] * wj
            end
        end
    end
    @inbounds for mu in 1:m.M
        s = 0.0
        for k in 1:m.K
            s += htanh(h[mu, k])
        end
        S[mu] = s
    end
    copyto!(m.wcache, w)
    m.cached[] = true
    return h
end

"""
    fields(m::TCM, w) -> Matrix (M × K)

Hidden-unit fields h_k(xi_mu) (a new matrix).
"""
fields(m::TCM, w::AbstractVector{Float64}) = copy(fields!(m, w))

"""
    committee(m::TCM, w) -> Vector (M)

Committee sums S_mu = sum_k htanh(h_k(xi_mu)).
"""
function committee(m::TCM, w::AbstractVector{Float64})
    fields!(m, w)
    return copy(m.S)
end

function margins!(out::AbstractVector{Float64}, m::TCM, w::AbstractVector{Float64})
    fields!(m, w)
    @inbounds for mu in 1:m.M
        out[mu] = m.sigma[mu] * m.S[mu]
    end
    return out
end

"""
    margins(m::TCM, w) -> Vector (M)

Margins sigma_mu * S_mu; pattern mu is correct iff its margin is > 0.
"""
margins(m::TCM, w::AbstractVector{Float64}) = margins!(zeros(m.M), m, w)

"""
    contains(m::TCM, w) -> Bool

True iff `w` classifies every training pattern correctly (all margins > 0),
i.e. `w` is in the solution set S.
"""
Base.contains(m::TCM, w::AbstractVector{Float64}) = allpositive(margins!(m.marg, m, w))

"""
    loss(m::TCM, w) -> Float64

Mean binary cross-entropy, mean_mu softplus(-2 sigma_mu S_mu).
"""
function loss(m::TCM, w::AbstractVector{Float64})
    fields!(m, w)
    L = 0.0
    @inbounds for mu in 1:m.M
        L += softplus(-2.0 * m.sigma[mu] * m.S[mu])
    end
    return L / m.M
end

"""
    loss_and_grad!(grad, m::TCM, w) -> loss

Mean BCE at `w`, with its analytic gradient written into `grad` (length N):
dL/dw[(k-1)n+j] = sum_mu c_mu htanh'(h_k) xi_mu[(k-1)n+j] with
c_mu = -(2 sigma_mu / M) logistic(-2 sigma_mu S_mu).  Allocation-free.
"""
loss_and_grad!(grad::AbstractVector{Float64}, m::TCM, w::AbstractVector{Float64}) = _loss_grad!(grad, m, w, true)

# The gradient, and the loss when `withloss` (GD steps skip the log1p).
function _loss_grad!(grad::AbstractVector{Float64}, m::TCM, w::AbstractVector{Float64}, withloss::Bool)
    length(grad) == m.N || throw(ConfigError("gradient buffer must have length N=$(m.N), got $(length(grad))"))
    h = fields!(m, w)
    L = 0.0
    invM = 1.0 / m.M
    reuse = m.exvalid[]   # `evaluate` at these weights left exp(-|x|) behind (a path records, then steps)
    @inbounds for mu in 1:m.M
        x = -2.0 * m.sigma[mu] * m.S[mu]
        e = reuse ? m.ex[mu] : exp(-abs(x))           # shared by softplus and logistic
        m.ex[mu] = e
        withloss && (L += max(x, 0.0) + log1p(e))     # softplus(x)
        lg = x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e)   # logistic(x)
        m.c[mu] = -2.0 * m.sigma[mu] * invM * lg
    end
    m.exvalid[] = true
    n = m.n
    @inbounds for k in 1:m.K
        for mu in 1:m.M
            m.ck[mu] = m.c[mu] * htanh_slope(h[mu, k])
        end
        Xk = m.Xt[k]
        off = (k - 1) * n
        ck = m.ck
        for j in 1:n
            s = 0.0
            @simd for mu in 1:m.M
                s += Xk[mu, j] * ck[mu]
            end
            grad[off+j] = s
        end
    end
    return L / m.M
end

"""
    loss_and_grad(m::TCM, w) -> (loss, grad)

Allocating form of [`loss_and_grad!`](@ref).
"""
function loss_and_grad(m::TCM, w::AbstractVector{Float64})
    g = zeros(m.N)
    L = loss_and_grad!(g, m, w)
    return L, g
end

function descent_step!(out::AbstractVector{Float64}, m::TCM, w::AbstractVector{Float64}, lr::Real)
    _loss_grad!(m.grad, m, w, false)
    lrf = Float64(lr)
    g = m.grad
    @inbounds @simd for i in 1:m.N
        out[i] = w[i] - lrf * g[i]
    end
    return out
end

descent_step(m::TCM, w::AbstractVector{Float64}, lr::Real) = descent_step!(zeros(m.N), m, w, lr)

function margin_grads!(G::AbstractMatrix{Float64}, m::TCM, w::AbstractVector{Float64}, idx::AbstractVector{<:Integer})
    size(G) == (m.N, length(idx)) ||
        throw(ConfigError("margin-gradient buffer must be $(m.N)×$(length(idx)), got $(size(G))"))
    h = fields!(m, w)
    n = m.n
    @inbounds for (r, mu) in enumerate(idx)
        for k in 1:m.K
            s = m.sigma[mu] * htanh_slope(h[mu, k])
            Xk = m.Xt[k]
            off = (k - 1) * n
            for j in 1:n
                G[off+j, r] = s * Xk[mu, j]
            end
        end
    end
    return G
end

"""
    margin_grads(m::TCM, w, idx) -> Matrix (N × length(idx))

d(sigma_mu S_mu)/dw for mu in `idx`, one column per pattern:
sigma_mu htanh'(h_k) xi_mu[(k-1)n+j] (kink convention above).
"""
margin_grads(m::TCM, w::AbstractVector{Float64}, idx::AbstractVector{<:Integer}) =
    margin_grads!(zeros(m.N, length(idx)), m, w, idx)

# Largest K M² Int16 Gram table margin_gram! builds (bytes); beyond, it multiplies G'G.
const GRAM_LIMIT = 256 * 2^20

"""
    margin_gram!(gg, m::TCM, w, idx, G) -> gg

`G'G` for the margin gradients `G = margin_grads(m, w, idx)` without the
O(N len(idx)²) product: entry (r, s) is
sigma_r sigma_s sum_k htanh'(h_k^r) htanh'(h_k^s) (xi_k^r · xi_k^s), read from
per-unit pattern Gram tables (Int16, built once per model when K M² fits in
`GRAM_LIMIT` bytes and n < 2^15; otherwise falls back to `mul!`).  All terms
are integers, so the result equals `G'G` exactly.
"""
function margin_gram!(gg::AbstractMatrix{Float64}, m::TCM, w::AbstractVector{Float64},
                      idx::AbstractVector{<:Integer}, G::AbstractMatrix{Float64})
    grams = pattern_grams!(m)
    isempty(grams) && return mul!(gg, transpose(G), G)
    h = fields!(m, w)
    nidx = length(idx)
    A = m.ak
    @inbounds for k in 1:m.K, r in 1:nidx
        A[r, k] = m.sigma[idx[r]] * htanh_slope(h[idx[r], k])
    end
    @inbounds for s in 1:nidx
        ms = idx[s]
        for r in 1:s
            mr = idx[r]
            acc = 0.0
            for k in 1:m.K
                acc += A[r, k] * A[s, k] * grams[k][mr, ms]
            end
            gg[r, s] = acc
            gg[s, r] = acc
        end
    end
    return gg
end

function pattern_grams!(m::TCM)
    g = m.gram[]
    (isempty(g) && m.K * m.M^2 * 2 <= GRAM_LIMIT && m.n < 2^15) || return g
    g = Matrix{Int16}[]
    for k in 1:m.K
        Xk = Matrix{Float64}(m.Xt[k])
        P = zeros(m.M, m.M)
        BLAS.syrk!('U', 'N', 1.0, Xk, 0.0, P)
        Q = Matrix{Int16}(undef, m.M, m.M)
        @inbounds for j in 1:m.M, i in 1:j
            Q[i, j] = Q[j, i] = Int16(P[i, j])     # exact: integers with |.| <= n
        end
        push!(g, Q)
    end
    m.gram[] = g
    return g
end

"Field (times sigma) a least-action kick gives the unit it moves: off htanh's kink at 1."
const KICK_FIELD = 0.5

"""
    least_action_kick!(out, m::TCM, w) -> out

One least-action correction (Nilsson; Mitchison & Durbin 1989) of every
misclassified pattern, written into `out` (Python's
`ramble.models.tcm_training.least_action_kick`).  For each pattern mu with margin <= 0
(fields taken at `w`, before any change), in increasing mu, the hidden unit
voting against sigma_mu with the smallest |h_k| (any unit if none votes
against; the first on ties) gets `w_k += (c sigma_mu - h_k) / (N/K) * xi_k`,
which sets that field to `c sigma_mu`, c = `KICK_FIELD` = 0.5: inside htanh's
linear range and off its kink, so rounding cannot decide the slope there.
"""
function least_action_kick!(out::AbstractVector{Float64}, m::TCM, w::AbstractVector{Float64})
    h = fields!(m, w)
    out === w && (w = copy(w))   # h belongs to w; out is written below
    copyto!(out, w)
    n = m.n
    @inbounds for mu in 1:m.M
        s = m.sigma[mu]
        s * m.S[mu] <= 0.0 || continue
        anywrong = false
        for k in 1:m.K
            anywrong |= s * h[mu, k] < 0.0
        end
        kbest = 0
        best = Inf
        for k in 1:m.K
            if (!anywrong || s * h[mu, k] < 0.0) && (kbest == 0 || abs(h[mu, k]) < best)
                kbest, best = k, abs(h[mu, k])
            end
        end
        f = (KICK_FIELD * s - h[mu, kbest]) / n
        Xk = m.Xt[kbest]
        off = (kbest - 1) * n
        for j in 1:n
            out[off+j] += f * Xk[mu, j]
        end
    end
    return out
end

"""
    least_action_kick(m::TCM, w) -> Vector

Allocating form of [`least_action_kick!`](@ref).
"""
least_action_kick(m::TCM, w::AbstractVector{Float64}) = least_action_kick!(similar(w, Float64), m, w)

"""
    evaluate(m::TCM, w) -> Evaluation

Mean BCE and training error (fraction of patterns with margin <= 0).
"""
function evaluate(m::TCM, w::AbstractVector{Float64})
    fields!(m, w)
    L = 0.0
    errors = 0
    reuse = m.exvalid[]
    @inbounds for mu in 1:m.M
        x = -2.0 * m.sigma[mu] * m.S[mu]
        e = reuse ? m.ex[mu] : exp(-abs(x))
        m.ex[mu] = e
        L += max(x, 0.0) + log1p(e)                   # softplus(x), as in `_loss_grad!`
        errors += m.sigma[mu] * m.S[mu] <= 0.0
    end
    m.exvalid[] = true
    return Evaluation(L / m.M, errors / m.M)
end

"""
    hessian!(H, m::TCM, w) -> H

Exact Hessian (N × N) of the mean BCE at `w` under the kink convention:
H = G D G' with G[:, mu] = dS_mu/dw and D = diag(4 s_mu (1 - s_mu) / M),
s_mu = logistic(2 sigma_mu S_mu), formed as one BLAS `syrk` of D^(1/2) G'.
"""
function hessian!(H::AbstractMatrix{Float64}, m::TCM, w::AbstractVector{Float64})
    size(H) == (m.N, m.N) || throw(ConfigError("Hessian buffer must be $(m.N)×$(m.N), got $(size(H))"))
    h = fields!(m, w)
    if size(m.hessG[]) != (m.M, m.N)
        m.hessG[] = zeros(m.M, m.N)
    end
    Gt = m.hessG[]             # Gt[mu, :] = sqrt(d_mu) dS_mu/dw
    n = m.n
    r = m.c                    # scratch: sqrt(d_mu)
    @inbounds for mu in 1:m.M
        x = 2.0 * m.sigma[mu] * m.S[mu]
        r[mu] = sqrt(4.0 * logistic(x) * logistic(-x) / m.M)   # 4 s (1 - s) / M, no cancellation
    end
    @inbounds for k in 1:m.K
        Xk = m.Xt[k]
        off = (k - 1) * n
        for mu in 1:m.M
            m.ck[mu] = r[mu] * htanh_slope(h[mu, k])
        end
        for j in 1:n
            @simd for mu in 1:m.M
                Gt[mu, off+j] = m.ck[mu] * Xk[mu, j]
            end
        end
    end
    BLAS.syrk!('U', 'T', 1.0, Gt, 0.0, H)
    @inbounds for j in 1:m.N, i in j+1:m.N
        H[i, j] = H[j, i]
    end
    return H
end

"""
    hessian(m::TCM, w) -> Matrix (N × N)

Allocating form of [`hessian!`](@ref).
"""
hessian(m::TCM, w::AbstractVector{Float64}) = hessian!(zeros(m.N, m.N), m, w)

"""
    hessian_spectrum(m::TCM, w) -> Vector (N)

All eigenvalues of the exact Hessian at `w`, ascending (LAPACK symmetric
eigensolver on the N × N matrix).
"""
hessian_spectrum(m::TCM, w::AbstractVector{Float64}) = eigvals!(Symmetric(hessian(m, w)))
