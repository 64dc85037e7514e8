# Tests of the Julia module Ramble (Test stdlib only).
#
#     julia --project=. julia/test/runtests.jl        (from the repository root)
#
# Data and weights come from a tiny generator defined here, not from Random,
# so that every Julia version (1.5 ... current) sees the same numbers.

using Test
using LinearAlgebra

include(joinpath(@__DIR__, "..", "src", "Ramble.jl"))
using .Ramble
using .Ramble: NormConstraint, apply, violation, target, least_action_kick, paper_config, fields,
               straight_line, iscomplete

# -- deterministic data: 64-bit LCG (Knuth's MMIX constants) ---------------
mutable struct LCG
    s::UInt64
end
next!(g::LCG) = (g.s = g.s * 0x5851f42d4c957f2d + 0x14057b7ef767814f; g.s)
unif(g::LCG) = ((next!(g) >> 11) + 0.5) / 2.0^53                 # (0, 1)
pm1(g::LCG) = (next!(g) >> 63) == 0 ? 1 : -1                       # ±1
gauss(g::LCG) = sqrt(-2 * log(unif(g))) * cos(2π * unif(g))       # N(0, 1)

function problem(N, K, M, seed)
    g = LCG(seed)
    X = [pm1(g) for i in 1:N, mu in 1:M]
    y = [pm1(g) for mu in 1:M]
    return TCM(X, y, K), g
end

randw(g::LCG, N, scale) = [scale * gauss(g) for _ in 1:N]

"Weights whose fields are all at least `gap` away from the kinks ±1 (so finite differences are smooth)."
function smooth_point(m, g, scale; gap=1e-3)
    for _ in 1:1000
        w = randw(g, m.N, scale)
        h = fields(m, w)
        all(x -> abs(abs(x) - 1) > gap, h) && return w
    end
    error("no smooth point found")
end

configerror_message(f) = try
    f()
    ""
catch e
    e isa ConfigError ? e.msg : rethrow()
end

# Some installations crash on any exception thrown from JIT-compiled code
# (Debian 11's Julia 1.5.3 on Debian 12's libunwind 1.6: the unwinder
# segfaults on Julia's JIT frames).  Ramble never throws in expected paths and
# works there, but Test itself throws and records backtraces, so a failing (or
# @test_throws) test would kill this process without a report.  Check in a
# child process first and stop with a clear message.
const EXCEPTIONS_OK = let
    code = "f(x) = x > 0 ? error(\"x\") : 0; g() = try f(1) catch; 1 end; exit(g() == 1 ? 0 : 3)"
    p = run(ignorestatus(`$(Base.julia_cmd()) --startup-file=no -e $code`))
    p.exitcode == 0 && p.termsignal == 0
end
if !EXCEPTIONS_OK
    println(stderr, """
        ERROR: this Julia ($(Base.julia_cmd().exec[1]), $VERSION) crashes when an exception is thrown from
        compiled code, so its test results could not be reported.  This is Debian 11's julia 1.5.3
        running on Debian 12's libunwind8 1.6, whose unwinder segfaults on Julia's JIT frames.  Fix:
            apt-get install --allow-downgrades libunwind8/bullseye
        (bullseye's 1.3.2, the version that julia package was built for), or use an official Julia
        build (juliaup or https://julialang.org/downloads), which bundles its own libunwind.""")
    flush(stderr)
    exit(2)
end

@testset "Ramble" begin


@testset "TCM constructor validation" begin
    X = ones(Int, 6, 4); y = [1, -1, 1, -1]
    @test TCM(X, y, 3).n == 2
    E = Ramble.tcm_data_error
    @test E(X, y, 3) === nothing
    @test occursin("K=4 must divide N=6", E(X, y, 4))
    @test occursin("K must be a positive integer", E(X, y, 0))
    @test occursin("N must be a positive integer", E(zeros(Int, 0, 4), y, 1))
    @test occursin("got 3 labels for M=4", E(X, y[1:3], 3))
    X2 = copy(X); X2[2, 3] = 0
    @test occursin("inputs must be ±1, found 0 in pattern 2, input 1", E(X2, y, 3))
    @test occursin("labels must be ±1", E(X, [1, -1, 2, 1], 3))
    @test occursin("labels must be ±1", E(X, [1.0, -1.0, NaN, 1.0], 3))
    if EXCEPTIONS_OK
        @test occursin("K=4 must divide N=6", configerror_message(() -> TCM(X, y, 4)))
        @test_throws ConfigError TCM(X2, y, 3)
        @test_throws ConfigError margins(TCM(X, y, 3), zeros(5))
    end
end

@testset "fields, margins, loss by hand" begin
    # N = 4, K = 2: unit 1 sees inputs 1:2, unit 2 sees 3:4.
    X = [1 -1; 1 1; -1 1; 1 1]          # two patterns (columns)
    y = [1, -1]
    m = TCM(X, y, 2)
    w = [0.3, 0.1, 2.0, -0.5]
    h = fields(m, w)
    @test h ≈ [0.4 -2.5; -0.2 1.5]
    S = [0.4 + -1.0, -0.2 + 1.0]
    @test committee(m, w) ≈ S
    @test margins(m, w) ≈ [S[1], -S[2]]
    @test !contains(m, w)
    @test loss(m, w) ≈ (log1p(exp(-2 * S[1])) + log1p(exp(2 * S[2]))) / 2
    e = evaluate(m, w)
    @test e.error == 1.0 && e.loss ≈ loss(m, w)
end

@testset "gradient vs central finite differences" begin
    m, g = problem(30, 3, 40, 0x1)
    for scale in (0.3, 1.5)          # mostly linear units, and many saturated ones
        w = smooth_point(m, g, scale)
        L, grad = loss_and_grad(m, w)
        @test L ≈ loss(m, w)
        fd = similar(w)
        ε = 1e-6
        for i in eachindex(w)
            e = zeros(length(w)); e[i] = ε
            fd[i] = (loss(m, w + e) - loss(m, w - e)) / (2ε)
        end
        @test maximum(abs.(fd - grad)) <= 1e-7 * max(maximum(abs.(grad)), 1e-3)
        # descent_step is w - lr * grad
        @test descent_step(m, w, 0.1) ≈ w - 0.1 * grad
    end
end

@testset "Hessian vs finite differences of the gradient" begin
    m, g = problem(30, 3, 40, 0x2)
    for scale in (0.3, 1.5)
        w = smooth_point(m, g, scale)
        H = hessian(m, w)
        @test H == H'
        ε = 1e-6
        fd = zeros(length(w), length(w))
        for j in eachindex(w)
            e = zeros(length(w)); e[j] = ε
            fd[:, j] = (loss_and_grad(m, w + e)[2] - loss_and_grad(m, w - e)[2]) / (2ε)
        end
        @test maximum(abs.(fd - H)) <= 1e-6 * maximum(abs.(H))
        ev = hessian_spectrum(m, w)
        @test issorted(ev)
        @test ev ≈ eigvals(Symmetric(H))
        @test minimum(ev) >= -1e-12 * maximum(ev)       # H = G D G' is positive semidefinite
    end
end

@testset "margin gradients vs finite differences" begin
    m, g = problem(30, 3, 40, 0x3)
    w = smooth_point(m, g, 0.5)
    idx = [1, 7, 40]
    G = margin_grads(m, w, idx)
    @test size(G) == (30, 3)
    ε = 1e-6
    for i in 1:30
        e = zeros(30); e[i] = ε
        fd = (margins(m, w + e) - margins(m, w - e)) / (2ε)
        @test fd[idx] ≈ G[i, :] atol = 1e-8
    end
end

@testset "kink convention: htanh' = 0 at h = ±1" begin
    X = reshape([1, 1], 2, 1); y = [1]
    m = TCM(X, y, 1)
    w = [0.5, 0.5]                       # h = 1 exactly: on the kink
    @test loss_and_grad(m, w)[2] == [0.0, 0.0]
    @test hessian(m, w) == zeros(2, 2)
    @test margin_grads(m, w, [1]) == zeros(2, 1)
    w = [0.25, 0.5]                      # h = 0.75: linear
    @test all(!iszero, loss_and_grad(m, w)[2])
end

@testset "least-action kick" begin
    m, g = problem(30, 3, 40, 0x4)
    w = randw(g, 30, 0.3)
    bad = findall(x -> x <= 0, margins(m, w))
    @test !isempty(bad)
    w2 = least_action_kick(m, w)
    @test w2 != w
    # on the misclassified pattern alone, the kick sets the field of the unit
    # voting against it with the smallest |h| to exactly its label
    mu = bad[1]
    X = hcat([vcat(x...) for x in ([m.Xt[k][mu, :] for k in 1:3],)]...)
    m1 = TCM(X, [m.sigma[mu]], 3)
    h = fields(m1, w)[1, :]
    s = m.sigma[mu]
    against = [k for k in 1:3 if s * h[k] < 0]
    cands = isempty(against) ? collect(1:3) : against
    k = cands[argmin(abs.(h[cands]))]
    h2 = fields(m1, least_action_kick(m1, w))[1, :]
    @test h2[k] ≈ Ramble.KICK_FIELD * s atol = 1e-12
    @test h2[setdiff(1:3, k)] == h[setdiff(1:3, k)]
    # patterns already correct are left alone
    good = findfirst(x -> x > 0, margins(m, w))
    Xg = vcat([m.Xt[k][good, :] for k in 1:3]...)
    mg = TCM(reshape(Xg, :, 1), [m.sigma[good]], 3)
    @test least_action_kick(mg, w) == w
end

@testset "config validation" begin
    P = Ramble.pathconfig_error
    ok = (:repair, 0.01, 1, 0.01, 0.1, 10, 1e-3, 100, 10, 1, 1, 3)
    @test P(ok...) === nothing
    @test occursin("gamma must be in (0, 1]", P(:repair, 0.0, ok[3:end]...))
    @test occursin("path variant must be one of", P(:nope, ok[2:end]...))
    @test occursin("arrival tolerance", P(ok[1:6]..., 1.0, ok[8:end]...))
    @test occursin("weight_every must be >= 1", P(ok[1:10]..., 0, 3))
    @test occursin("max waypoints must be >= 0", P(ok[1:11]..., -1))
    @test paper_config().max_waypoints == 0 && PathConfig().max_waypoints == 10
    # same fields, order and defaults as Python's ramble.core.path.PathConfig (the Python
    # tests compare the two languages directly; this pins the Julia side)
    @test fieldnames(PathConfig) == (:variant, :gamma, :n_epochs, :lr, :margin_target, :repair_steps, :tol,
                                     :max_iterations, :patience, :record_every, :weight_every, :max_waypoints, :escape,
                                     :elastic_halvings, :chord_iterations)
    d = PathConfig()
    @test (d.variant, d.gamma, d.n_epochs, d.lr, d.margin_target, d.repair_steps, d.tol, d.max_iterations,
           d.patience, d.record_every, d.weight_every, d.max_waypoints, d.escape, d.elastic_halvings,
           d.chord_iterations) == (:repair, 0.01, 1, 0.01, 0.2, 10, 1e-3, 20_000, 1000, 1, 1, 10, true, 0, 1)
    @test occursin("elastic halvings must be >= 0", P(ok..., -1))
    @test occursin("chord iterations must be >= 1", P(ok..., 0, 0))
    @test PathConfig(variant="paper").variant === :paper
    T = Ramble.trainconfig_error
    @test T(0.1, 0.5, 5000, 1000, 40000, 10, 0.1, 20000) === nothing
    @test occursin("training learning rate", T(0.0, 0.5, 5000, 1000, 40000, 10, 0.1, 20000))
    @test occursin("kick_after and kick_every", T(0.1, 0.5, 5000, 0, 40000, 10, 0.1, 20000))
    @test paper_config().gamma == 0.001
    if EXCEPTIONS_OK
        @test occursin("gamma must be in (0, 1]", configerror_message(() -> PathConfig(gamma=0.0)))
        @test_throws ConfigError TrainConfig(lr=0.0)
    end
end

# Two solutions of one small problem, shared by the tests below.
m, g = problem(30, 3, 40, 0x5)
cfg = TrainConfig()
sols = Vector{Float64}[]
for attempt in 1:20
    out = gd_solve(m, randw(g, 30, cfg.init_scale / sqrt(10)), cfg)
    if out.solved
        push!(sols, out.w)
        length(sols) == 2 && break
    end
end

@testset "gd_solve" begin
    @test length(sols) == 2
    for w in sols
        @test contains(m, w)
    end
    out = gd_solve(m, sols[1], cfg)                           # already a polished solution
    @test out.solved && out.epochs == 0 && out.w == sols[1]
end

@testset "Eq. 4 norm constraint" begin
    wa, wb = sols
    nc = NormConstraint(wa, wb, groups(m))
    @test target(nc, wa)[1] ≈ norm(wa)
    @test target(nc, wb)[1] ≈ norm(wb)
    x = 0.7 * wa + 0.3 * wb + 0.01 * randw(g, 30, 1.0)
    y = apply(nc, x)
    @test y !== nothing
    @test violation(nc, y) < 1e-10
    @test dot(y, x) / (norm(y) * norm(x)) ≈ 1.0           # a rescaling: direction kept
end

"Smallest margin over `n` + 1 evenly spaced points of the segment w0 -> w1 (an independent check)."
dense_min(m, w0, w1, n) = minimum(minimum(margins(m, w0 .+ (i / n) .* (w1 .- w0))) for i in 0:n)

@testset "exact certifier vs dense sampling" begin
    mc, gc = problem(30, 3, 40, 0x9)
    through_kinks = 0
    for trial in 1:60
        w0 = randw(gc, 30, 0.6)
        w1 = trial % 3 == 0 ? w0 .+ randw(gc, 30, 0.05) : randw(gc, 30, 0.6)
        c = certify_segment(mc, w0, w1)
        h0, h1 = fields(mc, w0), fields(mc, w1)
        through_kinks += any((h0 .- 1) .* (h1 .- 1) .< 0) || any((h0 .+ 1) .* (h1 .+ 1) .< 0)
        d = dense_min(mc, w0, w1, 2000)
        @test c.margin_bound <= d + 1e-12          # the exact minimum is below every sample
        @test d - c.margin_bound < 0.02             # and a fine grid comes close to it
        @test c.certified == (c.margin_bound > Ramble.rounding_slack(sum(abs, w0), sum(abs, w1), mc.n, mc.K))
        @test c.pieces >= 2 * mc.M
    end
    @test through_kinks >= 30                      # most segments cross a kink
end

@testset "a segment between two points of S that crosses the wall is refused" begin
    # one pattern, K = 3 units of one input each: margin = sum_k htanh(w_k)
    mw = TCM(reshape([1, 1, 1], 3, 1), [1], 3)
    w0, w1 = [1.0, -5.0, 0.5], [-5.0, 1.0, 0.5]     # margins 0.5 at both ends, -1.5 at t = 1/3
    @test contains(mw, w0) && contains(mw, w1)
    c = certify_segment(mw, w0, w1)
    @test !c.certified
    @test c.margin_bound ≈ -1.5
    @test certify_segment(mw, w0, [1.0, -4.0, 0.5]).certified   # a short step stays inside
end

@testset "find_path: every segment certified, endpoints, Eq. 4" begin
    wa, wb = sols
    r = find_path(m, wa, wb, PathConfig())
    @test occursin("chord iterations must be 1 on the Julia backend",
                   configerror_message(() -> find_path(m, wa, wb, PathConfig(chord_iterations=4))))
    @test iscomplete(r)
    @test r.reason == ""
    W = r.weights
    @test size(W, 1) == 30 && size(W, 2) == length(r.iteration)
    @test W[:, 1] == wa
    @test W[:, end] == wb
    @test r.iteration[1] == -1 && r.iteration[end] == r.iterations
    nc = NormConstraint(wa, wb, groups(m))
    for t in 1:size(W, 2)
        @test contains(m, W[:, t])
        @test violation(nc, W[:, t]) < 1e-9
    end
    # every vertex is stored: consecutive rows are the certified segments (checked independently)
    @test r.segments_certified == size(W, 2) - 1
    @test all(t -> dense_min(m, W[:, t], W[:, t+1], 20) > 0, 1:size(W, 2)-1)
    @test all(t -> certify_segment(m, W[:, t], W[:, t+1]).certified, 1:size(W, 2)-1)
    @test r.cert_min_margin > 0 && r.cert_pieces >= 2 * m.M * r.segments_certified
    @test r.arclength[1] == 0.0
    @test r.arclength ≈ vcat(0.0, cumsum([norm(W[:, t+1] - W[:, t]) for t in 1:size(W, 2)-1]))
    @test all(==(0.0), r.train_error)
    @test r.distance[1] == 0.0 && r.distance[end] == 1.0
    @test length(r.decisions) == r.iterations == length(r.gd_refused)
    @test r.elastic_accepted + r.elastic_repaired + r.elastic_refused == r.iterations
    @test count(==(Ramble.ELASTIC_ACCEPTED), r.decisions) == r.elastic_accepted
    # progress is called once per iteration
    calls = Ref(0)
    r2 = find_path(m, wa, wb, PathConfig(); progress=(it, d) -> (calls[] += 1))
    @test calls[] == r2.iterations
    @test r2.weights == r.weights                          # deterministic
    # weights of every 7th recorded point, and of the first and last
    r7 = find_path(m, wa, wb, PathConfig(weight_every=7))
    T = length(r7.iteration)
    @test r7.iteration == r.iteration && r7.train_loss == r.train_loss
    @test r7.weight_index == vcat(0:7:T-1, (T - 1) % 7 == 0 ? Int[] : [T - 1])
    @test r7.weights == r.weights[:, r7.weight_index .+ 1]
    # the paper's variant: stops at the iteration limit on this pair, every segment certified
    rp = find_path(m, wa, wb, paper_config(max_iterations=500))
    @test rp.status == "failed" && startswith(rp.reason, "iteration limit 500")
    @test rp.segments_certified == size(rp.weights, 2) - 1 == rp.gd_accepted + rp.elastic_accepted
    @test all(t -> certify_segment(m, rp.weights[:, t], rp.weights[:, t+1]).certified, 1:size(rp.weights, 2)-1)
    # distances in another frame (a leg of a longer path)
    rf = find_path(m, wa, wb, PathConfig(); frame=(wa, wb))
    @test rf.distance == r.distance
    far = 2 .* wb .- wa
    rg = find_path(m, wa, wb, PathConfig(); frame=(wa, far))
    @test rg.distance[1] ≈ 1 - norm(wa - far) / norm(far - wa)
    @test rg.iteration == r.iteration
    # a progress callback returning false stops the run
    rs = find_path(m, wa, wb, PathConfig(); progress=(it, d) -> it < 4)
    @test rs.status == "interrupted" && rs.iterations == 5
    # endpoints must be solutions
    @test occursin("W_a is not a solution", Ramble.endpoints_error(m, zeros(30), wb))
    @test occursin("W_b is not a solution", Ramble.endpoints_error(m, wa, zeros(30)))
    @test occursin("one length", Ramble.endpoints_error(m, wa, wb[1:29]))
    @test Ramble.endpoints_error(m, wa, wb) === nothing
    if EXCEPTIONS_OK
        @test occursin("W_a is not a solution", configerror_message(() -> find_path(m, zeros(30), wb)))
    end
end

@testset "straight line" begin
    wa, wb = sols
    line = straight_line(m, wa, wb, 11)
    @test line.alpha[1] == 0.0 && line.alpha[end] == 1.0 && length(line.alpha) == 11
    @test line.train_error[1] == 0.0 && line.train_error[end] == 0.0
    @test line.train_loss[1] ≈ evaluate(m, wa).loss
    EXCEPTIONS_OK && @test_throws ConfigError straight_line(m, wa, wb, 1)
end

@testset "bridge entry points" begin
    B = Ramble.Bridge
    @test B.write_pointers(Ptr{Int}(0), 0) == length(B.cfunction_pointers())
    # expected failures come back as status codes without an exception
    @test B.c_raise_test(0) == B.STATUS_CONFIG
    @test B.LAST_ERROR[] == "a ConfigError message from Julia"
    @test B.guarded(() -> B.Stopped()) == B.STATUS_INTERRUPTED
    buf = zeros(UInt8, 4)
    n = B.c_error_message(pointer(buf), 4)
    @test n == sizeof(B.LAST_ERROR[]) && String(copy(buf)) == B.LAST_ERROR[][1:4]
    if EXCEPTIONS_OK
        @test B.c_raise_test(1) == B.STATUS_ERROR
        @test startswith(B.LAST_ERROR[], "ErrorException: deliberate Julia error")
        @test !occursin("Stacktrace", B.LAST_ERROR[])           # no stack frames (see `describe`)
        @test B.guarded(() -> throw(ConfigError("bad input"))) == B.STATUS_CONFIG
        @test B.LAST_ERROR[] == "bad input"
    end
    # a model through the C entry points
    X = Int8[1 -1; 1 1; -1 1]; y = Int8[1, -1]
    h = Ref(0)
    GC.@preserve X y h begin
        @test B.c_tcm_new(Ptr{Cvoid}(pointer(X)), 1, 3, 2, Ptr{Cvoid}(pointer(y)), 1, 2, 3,
                          Base.unsafe_convert(Ptr{Int}, h)) == B.STATUS_OK
    end
    w = [0.5, -0.2, 0.1]; out = zeros(2)
    GC.@preserve w out begin
        @test B.c_margins(h[], pointer(w), 3, pointer(out)) == B.STATUS_OK
        @test out ≈ margins(B.MODELS[h[]], w)
        @test B.c_margins(h[], pointer(w), 2, pointer(out)) == B.STATUS_CONFIG
        @test occursin("weights must have length N=3, got 2", B.LAST_ERROR[])
        @test B.c_tcm_free(h[]) == B.STATUS_OK
        @test B.c_margins(h[], pointer(w), 3, pointer(out)) == B.STATUS_CONFIG
    end
    X[1, 1] = 0
    GC.@preserve X y h begin
        @test B.c_tcm_new(Ptr{Cvoid}(pointer(X)), 1, 3, 2, Ptr{Cvoid}(pointer(y)), 1, 2, 3,
                          Base.unsafe_convert(Ptr{Int}, h)) == B.STATUS_CONFIG
    end
    @test occursin("inputs must be ±1", B.LAST_ERROR[])
end

@testset "timing at the paper's size (informational)" begin
    mp, gp = problem(300, 3, 620, 0x6)
    w = randw(gp, 300, 0.5 / sqrt(100))
    hessian_spectrum(mp, w)                                   # compile
    t = @elapsed for _ in 1:5
        hessian_spectrum(mp, w)
    end
    println("  Hessian + spectrum, N=300 M=620: $(round(1000 * t / 5, digits=1)) ms")
    grad = zeros(300)
    loss_and_grad!(grad, mp, w)
    t = @elapsed for i in 1:200
        w[1] += 1e-9                                           # defeat the field cache
        loss_and_grad!(grad, mp, w)
    end
    println("  loss + gradient, N=300 M=620: $(round(1e6 * t / 200, digits=1)) µs")
end

end # testset Ramble
