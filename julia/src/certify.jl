# Exact certification of a straight segment of weight space for the TCM: the
# Julia twin of `segment_min_margins` / `TCMProblem.certify_segment` in
# python/ramble/models/tcm.py (whose docstrings are the specification).
#
# Along w(t) = w0 + t (w1 - w0) every hidden field is h0 + t (h1 - h0), so
# each pattern's margin sigma sum_k htanh(h_k(t)) is piecewise linear in t
# with kinks where a field crosses +1 or -1; its minimum over [0, 1] is at
# t = 0, t = 1 or a kink in (0, 1).  Both languages evaluate the same points
# with the same operations in the same order (no fused multiply-add, fields
# summed left to right), so they make the same decisions.

"""
    SegmentCertificate(certified, margin_bound, pieces, seconds)

Whether the segment w0 -> w1 lies inside S (Python's
`ramble.core.problem.SegmentCertificate`): `margin_bound` is the exact minimum
margin over the segment, `certified` is true iff it exceeds
[`rounding_slack`](@ref); `pieces` counts the margin evaluations (2 per
pattern plus the kinks inside); `seconds` is the wall time.
"""
struct SegmentCertificate
    certified::Bool
    margin_bound::Float64
    pieces::Int
    seconds::Float64
end

"""
    rounding_slack(l1_w0, l1_w1, n, K) -> Float64

Bound on the float64 rounding of a margin along a segment (inputs ±1): a
field sums n = N/K products, so it is within n eps |w|_1 of the exact value;
interpolation and the sum of K clipped fields add a few eps.  Same formula as
Python's `ramble.models.tcm.rounding_slack`.
"""
rounding_slack(l1_w0::Float64, l1_w1::Float64, n::Int, K::Int) =
    eps(Float64) * ((n + 4) * (l1_w0 + l1_w1) + 4.0 * K)

"""
    CertWork(model::TCM)

Scratch of [`certify_segment!`](@ref): two slots, each the fields (M × K) of
one weight vector, looked up bit for bit.  A path certifies w -> cand and then
cand -> next, so the end of one segment is the start of the next and no field
is computed twice.  Not thread-safe.
"""
struct CertWork
    w::NTuple{2,Vector{Float64}}
    h::NTuple{2,Matrix{Float64}}
    margin::NTuple{2,Vector{Float64}}   # sigma_mu sum_k htanh(h[mu, k]), fields added left to right
    valid::Vector{Bool}
    l1::Vector{Float64}
end

CertWork(m::TCM) = CertWork((zeros(m.N), zeros(m.N)), (zeros(m.M, m.K), zeros(m.M, m.K)), (zeros(m.M), zeros(m.M)),
                            [false, false], zeros(2))

function findslot(cw::CertWork, w::AbstractVector{Float64})
    @inbounds for s in 1:2
        cw.valid[s] && sameweights(cw.w[s], w) && return s
    end
    return 0
end

function fillslot!(cw::CertWork, s::Int, m::TCM, w::AbstractVector{Float64})
    copyto!(cw.h[s], fields!(m, w))
    mg = cw.margin[s]
    @inbounds for mu in 1:m.M
        mg[mu] = margin_of(cw.h[s], m.sigma[mu], mu, m.K)
    end
    copyto!(cw.w[s], w)
    l1 = 0.0
    @inbounds for i in eachindex(w)
        l1 += abs(w[i])
    end
    cw.l1[s] = l1
    cw.valid[s] = true
    return s
end

"sigma_mu * sum_k htanh(h0[mu,k] + t (h1[mu,k] - h0[mu,k])), fields added left to right."
@inline function margin_at(h0::Matrix{Float64}, h1::Matrix{Float64}, sigma::Float64, mu::Int, K::Int, t::Float64)
    s = 0.0
    @inbounds for j in 1:K
        a = h0[mu, j]
        s += htanh(a + t * (h1[mu, j] - a))
    end
    return sigma * s
end

"sigma_mu * sum_k htanh(h[mu,k]), fields added left to right."
@inline function margin_of(h::Matrix{Float64}, sigma::Float64, mu::Int, K::Int)
    s = 0.0
    @inbounds for j in 1:K
        s += htanh(h[mu, j])
    end
    return sigma * s
end

"""
    segment_min_margin(h0, h1, m0, m1, sigma) -> (min over patterns of the exact segment minimum, pieces)

`h0`, `h1`: fields (M × K) at the segment's ends, `m0`, `m1` the margins
there (Python's `segment_min_margins`, reduced over patterns).  A kink t =
(wall - a) / (b - a) is only computed when a and b are not strictly on one
side of the wall: when they are, that quotient is outside (0, 1) in floating
point too (subtraction keeps signs, rounding is monotone), so Python's test
`0 < t < 1` would reject it as well and the decisions stay identical.
"""
function segment_min_margin(h0::Matrix{Float64}, h1::Matrix{Float64}, m0::Vector{Float64}, m1::Vector{Float64},
                            sigma::Vector{Float64})
    M, K = size(h0)
    low = Inf
    pieces = 2 * M
    @inbounds for mu in 1:M
        lo = min(m0[mu], m1[mu])
        for k in 1:K
            a = h0[mu, k]
            b = h1[mu, k]
            for wall in (1.0, -1.0)
                (a - wall) * (b - wall) > 0.0 && continue   # both ends strictly on one side
                t = (wall - a) / (b - a)   # ±Inf or NaN when b == a: never inside
                if t > 0.0 && t < 1.0
                    lo = min(lo, margin_at(h0, h1, sigma[mu], mu, K, t))
                    pieces += 1
                end
            end
        end
        low = min(low, lo)
    end
    return low, pieces
end

"""
    certify_segment!(cw::CertWork, m::TCM, w0, w1) -> SegmentCertificate

Exact certificate of the segment `w0 -> w1` (see the top of this file).  No
allocation; fields of `w0`/`w1` are reused from `cw` or the model's cache.
"""
function certify_segment!(cw::CertWork, m::TCM, w0::AbstractVector{Float64}, w1::AbstractVector{Float64})
    start = time_ns()
    s0 = findslot(cw, w0)
    s1 = findslot(cw, w1)
    s1 == 0 && (s1 = fillslot!(cw, s0 == 1 ? 2 : 1, m, w1))
    s0 == 0 && (s0 = fillslot!(cw, s1 == 1 ? 2 : 1, m, w0))
    low, pieces = segment_min_margin(cw.h[s0], cw.h[s1], cw.margin[s0], cw.margin[s1], m.sigma)
    slack = rounding_slack(cw.l1[s0], cw.l1[s1], m.n, m.K)
    return SegmentCertificate(low > slack, low, pieces, (time_ns() - start) / 1e9)
end

"""
    certify_segment(m::TCM, w0, w1) -> SegmentCertificate

Allocating form of [`certify_segment!`](@ref).
"""
certify_segment(m::TCM, w0::AbstractVector{Float64}, w1::AbstractVector{Float64}) =
    certify_segment!(CertWork(m), m, w0, w1)
