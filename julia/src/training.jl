# Finding solutions by full-batch gradient descent (paper Sect. 3.1): the Julia
# twin of `gd_solve` in python/ramble/models/tcm_training.py (ported line for line).

"""
    TrainConfig(; lr=0.1, init_scale=0.5, kick_after=5_000, kick_every=1_000, max_epochs=40_000,
                restarts=10, polish_margin=0.1, polish_epochs=20_000)

How solutions are trained (same fields, defaults, checks and messages as
Python's `ramble.models.tcm_training.TrainConfig`).  `gd_solve` uses `lr`, `kick_after`,
`kick_every`, `max_epochs`, `polish_margin` and `polish_epochs`; `init_scale`
and `restarts` belong to the restart policy, which lives in Python.
"""
struct TrainConfig
    lr::Float64
    init_scale::Float64
    kick_after::Int
    kick_every::Int
    max_epochs::Int
    restarts::Int
    polish_margin::Float64
    polish_epochs::Int
    function TrainConfig(lr::Real, init_scale::Real, kick_after::Integer, kick_every::Integer, max_epochs::Integer,
                         restarts::Integer, polish_margin::Real, polish_epochs::Integer)
        err = trainconfig_error(lr, init_scale, kick_after, kick_every, max_epochs, restarts, polish_margin,
                                polish_epochs)
        err === nothing || throw(ConfigError(err))
        return new(lr, init_scale, kick_after, kick_every, max_epochs, restarts, polish_margin, polish_epochs)
    end
end

TrainConfig(; lr=0.1, init_scale=0.5, kick_after=5_000, kick_every=1_000, max_epochs=40_000, restarts=10,
            polish_margin=0.1, polish_epochs=20_000) =
    TrainConfig(lr, init_scale, kick_after, kick_every, max_epochs, restarts, polish_margin, polish_epochs)

"""
    trainconfig_error(lr, init_scale, kick_after, kick_every, max_epochs, restarts,
                      polish_margin, polish_epochs) -> Union{Nothing,String}

The ConfigError message `TrainConfig` would throw for these fields, or `nothing`.
"""
function trainconfig_error(lr, init_scale, kick_after, kick_every, max_epochs, restarts, polish_margin, polish_epochs)
    (lr > 0 && isfinite(lr)) || return "training learning rate must be a finite number > 0, got $lr"
    (init_scale > 0 && isfinite(init_scale)) || return "init scale must be a finite number > 0, got $init_scale"
    max_epochs >= 1 || return "max epochs must be >= 1, got $max_epochs"
    (kick_after >= 1 && kick_every >= 1) ||
        return "kick_after and kick_every must be >= 1, got $kick_after and $kick_every"
    restarts >= 1 || return "restarts must be >= 1, got $restarts"
    polish_margin >= 0 || return "polish margin must be >= 0, got $polish_margin"
    polish_epochs >= 0 || return "polish epochs must be >= 0, got $polish_epochs"
    return nothing
end

"""
    SolveOutcome

Result of one GD attempt: final weights `w`, whether they are in S
(`solved`), GD epochs spent reaching S (or all of them), least-action kicks,
polishing epochs, final number of errors, smallest margin.
"""
struct SolveOutcome
    w::Vector{Float64}
    solved::Bool
    epochs::Int
    kicks::Int
    polish_epochs::Int
    errors::Int
    min_margin::Float64
end

"""
    gd_solve(model, w0, cfg::TrainConfig; poll=nothing) -> SolveOutcome

Full-batch gradient descent from `w0` until every margin is positive, then
polishing (the Julia twin of Python's `ramble.models.tcm_training.gd_solve`, line for
line).  Every epoch is one step `w - lr ∇L` followed by a membership test.  If
S is not reached after `cfg.kick_after` epochs, and again every
`cfg.kick_every` epochs, `least_action_kick!` corrects the remaining errors
and GD resumes; at most `cfg.max_epochs` GD epochs in all.  Once in S, GD
continues while the smallest margin of the best iterate is below
`cfg.polish_margin` (at most `cfg.polish_epochs`), and the in-S iterate with
the largest smallest margin is returned.

The model must provide `margins`, `descent_step` and `least_action_kick!`
(the TCM does).  `poll()`, if given, is called every 256 epochs; if it
returns `false` the run stops there and returns its current state (the Python
bridge uses it to let Ctrl-C through).  `w0` is not modified.
"""
function gd_solve(model, w0::AbstractVector{Float64}, cfg::TrainConfig; poll=nothing)
    w = Vector{Float64}(w0)
    nxt = similar(w)
    m = margins(model, w)
    epochs = 0
    kicks = 0
    next_kick = cfg.kick_after
    while !allpositive(m) && epochs < cfg.max_epochs
        if epochs == next_kick
            least_action_kick!(nxt, model, w)
            w, nxt = nxt, w
            kicks += 1
            next_kick += cfg.kick_every
        end
        descent_step!(nxt, model, w, cfg.lr)
        w, nxt = nxt, w
        epochs += 1
        margins!(m, model, w)
        if poll !== nothing && epochs % 256 == 0 && poll() === false
            break
        end
    end
    solved = allpositive(m)
    polish = 0
    if solved
        # Keep descending; return the in-S iterate with the largest smallest
        # margin (GD on the mean BCE does not raise it monotonically).
        best_w = copy(w)
        best_m = copy(m)
        best_min = minimum(best_m)
        while best_min < cfg.polish_margin && polish < cfg.polish_epochs
            descent_step!(nxt, model, w, cfg.lr)
            w, nxt = nxt, w
            margins!(m, model, w)
            polish += 1
            mmin = minimum(m)
            if mmin > best_min
                copyto!(best_w, w)
                copyto!(best_m, m)
                best_min = mmin
            end
            if poll !== nothing && polish % 256 == 0 && poll() === false
                break
            end
        end
        w, m = best_w, best_m
    end
    return SolveOutcome(w, solved, epochs, kicks, polish, count(x -> x <= 0.0, m), minimum(m))
end
