"""
    Ramble.Bridge

C-callable entry points for the Python bridge (`python/ramble/julia/bridge.py`
and `julia_backend.py`).  Python obtains their addresses once, through
[`write_pointers`](@ref), and then calls them with ctypes; NumPy arrays travel
as raw pointers and are wrapped zero-copy (`unsafe_wrap(...; own=false)`), so
the caller must keep them alive during the call (it does: they are arguments).

Every entry point returns a `Cint` status:

* `0` success; results are written into caller-provided buffers;
* `1` bad input (the message a [`ConfigError`](@ref) would carry), message via
  `c_error_message`;
* `2` any other Julia exception (a bug), its type and message via
  `c_error_message`;
* `3` the Python callback asked to stop (e.g. Ctrl-C): Python re-raises its
  own exception.

Expected failures (bad sizes, bad data, endpoints outside S, a stop request)
are detected *without throwing*: the `*_error` checkers return messages and
callbacks return flags.  Only genuine bugs raise, and `guarded` catches those.
This matters beyond style: on some installations (Debian 11's Julia 1.5.3 on
Debian 12's libunwind 1.6) unwinding through JIT-compiled frames crashes, so
any exception thrown under a C entry point kills the process (see
docs/julia.md).

Models (`TCM`) and path results live in registries keyed by integer handles
until Python frees them.  Nothing here is thread-safe: Python calls in from the
one thread that started Julia.
"""
module Bridge

using ..Ramble: Ramble, TCM, ConfigError, TrainConfig, PathConfig, PathResult, gd_solve, find_path,
                loss_and_grad!, margins!, evaluate, hessian!, straight_line_at, tcm_data_error,
                trainconfig_error, pathconfig_error, endpoints_error, certify_segment
using LinearAlgebra

"Version of the C interface; Python checks it after loading the module."
const ABI = 2

"""
Field names of `PathConfig` packed into the bridge's float array `fcfg` and
int array `icfg`, in order (Python's `julia_backend.PATH_FLOAT_FIELDS`,
`PATH_INT_FIELDS`; a test checks they agree).  `escape` travels as 0/1.
The config is built from them by name, so order here is the only contract.
"""
const PATH_FLOAT_FIELDS = (:gamma, :lr, :margin_target, :tol)
const PATH_INT_FIELDS = (:n_epochs, :repair_steps, :max_iterations, :patience, :record_every, :weight_every,
                         :max_waypoints, :escape, :elastic_halvings, :chord_iterations)

const STATUS_OK = Cint(0)
const STATUS_CONFIG = Cint(1)
const STATUS_ERROR = Cint(2)
const STATUS_INTERRUPTED = Cint(3)

const MODELS = Dict{Int,TCM}()
const RESULTS = Dict{Int,PathResult}()
const NEXT_ID = Ref(0)
const LAST_ERROR = Ref("")

"Returned by an entry point's body when the Python callback asked to stop."
struct Stopped end

"""
    describe(e) -> String

First lines of `showerror(e)` (at most 6), prefixed by the exception type when
the message does not name it.  No stack frames: symbolising them makes some
LLVM builds print DWARF warnings to stderr, and Python already names the entry
point that failed.
"""
function describe(e)
    msg = try
        sprint(showerror, e)
    catch
        string(typeof(e))
    end
    lines = split(msg, '\n')
    head = join(lines[1:min(end, 6)], "\n")
    tname = string(nameof(typeof(e)))
    startswith(head, tname) || (head = "$tname: $head")
    return head
end

"""
    guarded(f, args...) -> Cint

Run `f(args...)`, which returns `nothing` on success, a `String` (the message
of a bad input) or `Stopped()`; turn that, or any exception (a bug), into a
status code, storing the message for `c_error_message`.
"""
function guarded(f, args...)
    r = try
        f(args...)
    catch e
        LAST_ERROR[] = e isa ConfigError ? e.msg : describe(e)
        return e isa ConfigError ? STATUS_CONFIG : STATUS_ERROR
    end
    if r === nothing
        return STATUS_OK
    elseif r isa Stopped
        LAST_ERROR[] = "stopped by the Python caller"
        return STATUS_INTERRUPTED
    else
        LAST_ERROR[] = string(r)
        return STATUS_CONFIG
    end
end

vec64(p::Ptr{Float64}, n::Int) = unsafe_wrap(Array, p, n; own=false)

nomodel(h) = "no Julia TCM with handle $h (already freed?)"
lengtherror(m::TCM, n) = n == m.N ? nothing : "weights must have length N=$(m.N), got $n"

function newid()
    NEXT_ID[] += 1
    return NEXT_ID[]
end

"""
    Callback(fp)

A Julia callable around the C function `int fp(int64 it, double value)`:
returns `true` to go on, `false` (and remembers it) when `fp` returns non-zero.
"""
mutable struct Callback
    fp::Ptr{Cvoid}
    stopped::Bool
end
Callback(fp::Ptr{Cvoid}) = Callback(fp, false)
function (cb::Callback)(it::Integer, value::Real)
    r = ccall(cb.fp, Cint, (Int64, Float64), Int64(it), Float64(value))
    r == 0 && return true
    cb.stopped = true
    return false
end
(cb::Callback)() = cb(-1, NaN)

# ---------------------------------------------------------------- entry points

"Copy the last error message into `buf` (at most `cap` bytes); returns its full length in bytes."
function c_error_message(buf::Ptr{UInt8}, cap::Int)::Int
    msg = LAST_ERROR[]
    n = sizeof(msg)
    if buf != C_NULL && cap > 0
        GC.@preserve msg unsafe_copyto!(buf, pointer(msg), min(n, cap))
    end
    return n
end

function _tcm_new(x::Ptr{Cvoid}, xtype::Int, N::Int, M::Int, y::Ptr{Cvoid}, ytype::Int, My::Int, K::Int, out::Ptr{Int})
    (N >= 0 && M >= 0 && My >= 0) || return "negative data size"
    (xtype in (1, 2) && ytype in (1, 2)) || return "unsupported dtype codes $xtype, $ytype"
    X = xtype == 1 ? unsafe_wrap(Array, Ptr{Int8}(x), (N, M); own=false) :
                     unsafe_wrap(Array, Ptr{Float64}(x), (N, M); own=false)
    Y = ytype == 1 ? unsafe_wrap(Array, Ptr{Int8}(y), My; own=false) :
                     unsafe_wrap(Array, Ptr{Float64}(y), My; own=false)
    err = tcm_data_error(X, Y, K)
    err === nothing || return err
    model = TCM(X, Y, K)       # copies the data
    id = newid()
    MODELS[id] = model
    unsafe_store!(out, id)
    return nothing
end
"New TCM from N×M inputs (dtype code 1 = Int8, 2 = Float64) and labels; handle written to `out`."
c_tcm_new(x::Ptr{Cvoid}, xtype::Int, N::Int, M::Int, y::Ptr{Cvoid}, ytype::Int, My::Int, K::Int, out::Ptr{Int})::Cint =
    guarded(_tcm_new, x, xtype, N, M, y, ytype, My, K, out)

_tcm_free(h::Int) = (delete!(MODELS, h); nothing)
"Forget TCM `h`."
c_tcm_free(h::Int)::Cint = guarded(_tcm_free, h)

function _loss_grad(h::Int, w::Ptr{Float64}, n::Int, loss::Ptr{Float64}, grad::Ptr{Float64})
    m = get(MODELS, h, nothing)
    m === nothing && return nomodel(h)
    err = lengtherror(m, n)
    err === nothing || return err
    wv = vec64(w, n)
    if grad == C_NULL
        unsafe_store!(loss, Ramble.loss(m, wv))
    else
        unsafe_store!(loss, loss_and_grad!(vec64(grad, m.N), m, wv))
    end
    return nothing
end
"Mean BCE into `loss[]` and, unless `grad` is NULL, its gradient into `grad` (N)."
c_loss_grad(h::Int, w::Ptr{Float64}, n::Int, loss::Ptr{Float64}, grad::Ptr{Float64})::Cint =
    guarded(_loss_grad, h, w, n, loss, grad)

function _margins(h::Int, w::Ptr{Float64}, n::Int, out::Ptr{Float64})
    m = get(MODELS, h, nothing)
    m === nothing && return nomodel(h)
    err = lengtherror(m, n)
    err === nothing || return err
    margins!(vec64(out, m.M), m, vec64(w, n))
    return nothing
end
"Margins (M) into `out`."
c_margins(h::Int, w::Ptr{Float64}, n::Int, out::Ptr{Float64})::Cint = guarded(_margins, h, w, n, out)

function _evaluate(h::Int, w::Ptr{Float64}, n::Int, out::Ptr{Float64})
    m = get(MODELS, h, nothing)
    m === nothing && return nomodel(h)
    err = lengtherror(m, n)
    err === nothing || return err
    e = evaluate(m, vec64(w, n))
    unsafe_store!(out, e.loss, 1)
    unsafe_store!(out, e.error, 2)
    return nothing
end
"Loss and error into `out[1:2]`."
c_evaluate(h::Int, w::Ptr{Float64}, n::Int, out::Ptr{Float64})::Cint = guarded(_evaluate, h, w, n, out)

function _hessian(h::Int, w::Ptr{Float64}, n::Int, H::Ptr{Float64}, eig::Ptr{Float64})
    m = get(MODELS, h, nothing)
    m === nothing && return nomodel(h)
    err = lengtherror(m, n)
    err === nothing || return err
    Hm = H == C_NULL ? zeros(m.N, m.N) : unsafe_wrap(Array, H, (m.N, m.N); own=false)
    hessian!(Hm, m, vec64(w, n))
    if eig != C_NULL
        # the eigensolver destroys its input: work on a copy when H is the caller's
        vals = eigvals!(Symmetric(H == C_NULL ? Hm : copy(Hm)))
        copyto!(vec64(eig, m.N), vals)
    end
    return nothing
end
"Exact Hessian into `H` (N×N, may be NULL) and, unless `eig` is NULL, its eigenvalues (ascending) into `eig`."
c_hessian(h::Int, w::Ptr{Float64}, n::Int, H::Ptr{Float64}, eig::Ptr{Float64})::Cint =
    guarded(_hessian, h, w, n, H, eig)

function _gd_solve(h::Int, w0::Ptr{Float64}, n::Int, fcfg::Ptr{Float64}, icfg::Ptr{Int}, poll::Ptr{Cvoid},
                   wout::Ptr{Float64}, iout::Ptr{Int}, fout::Ptr{Float64})
    m = get(MODELS, h, nothing)
    m === nothing && return nomodel(h)
    err = lengtherror(m, n)
    err === nothing || return err
    f = vec64(fcfg, 3)
    i = unsafe_wrap(Array, icfg, 5; own=false)
    err = trainconfig_error(f[1], f[2], i[1], i[2], i[3], i[4], f[3], i[5])
    err === nothing || return err
    cfg = TrainConfig(f[1], f[2], i[1], i[2], i[3], i[4], f[3], i[5])
    cb = poll == C_NULL ? nothing : Callback(poll)
    out = gd_solve(m, vec64(w0, n), cfg; poll=cb)
    cb !== nothing && cb.stopped && return Stopped()
    copyto!(vec64(wout, m.N), out.w)
    unsafe_store!(iout, Int(out.solved), 1)
    unsafe_store!(iout, out.epochs, 2)
    unsafe_store!(iout, out.kicks, 3)
    unsafe_store!(iout, out.polish_epochs, 4)
    unsafe_store!(iout, out.errors, 5)
    unsafe_store!(fout, out.min_margin)
    return nothing
end
"""
`gd_solve` from `w0`; `fcfg` = (lr, init_scale, polish_margin), `icfg` = (kick_after,
kick_every, max_epochs, restarts, polish_epochs); outputs: weights, (solved, epochs, kicks,
polish_epochs, errors), min_margin.  `poll` is a C callback (or NULL) called every 256 epochs.
"""
c_gd_solve(h::Int, w0::Ptr{Float64}, n::Int, fcfg::Ptr{Float64}, icfg::Ptr{Int}, poll::Ptr{Cvoid},
           wout::Ptr{Float64}, iout::Ptr{Int}, fout::Ptr{Float64})::Cint =
    guarded(_gd_solve, h, w0, n, fcfg, icfg, poll, wout, iout, fout)

"""
    unpack_pathconfig(variant, fcfg, icfg) -> PathConfig or String (the ConfigError message)

The `PathConfig` packed by Python: variant 0 = paper, 1 = repair; the arrays
hold `PATH_FLOAT_FIELDS` and `PATH_INT_FIELDS`, matched by name.
"""
function unpack_pathconfig(variant::Int, fcfg::Ptr{Float64}, icfg::Ptr{Int})
    variant in (0, 1) || return "unknown path variant code $variant"
    v = variant == 0 ? :paper : :repair
    f = NamedTuple{PATH_FLOAT_FIELDS}(Tuple(vec64(fcfg, length(PATH_FLOAT_FIELDS))))
    i = NamedTuple{PATH_INT_FIELDS}(Tuple(unsafe_wrap(Array, icfg, length(PATH_INT_FIELDS); own=false)))
    err = pathconfig_error(v, f.gamma, i.n_epochs, f.lr, f.margin_target, i.repair_steps, f.tol, i.max_iterations,
                           i.patience, i.record_every, i.weight_every, i.max_waypoints, i.elastic_halvings,
                           i.chord_iterations)
    err === nothing || return err
    return PathConfig(; variant=v, f..., merge(i, (escape=i.escape != 0,))...)
end

function _pathconfig_echo(variant::Int, fcfg::Ptr{Float64}, icfg::Ptr{Int}, buf::Ptr{UInt8}, cap::Int, len::Ptr{Int})
    cfg = unpack_pathconfig(variant, fcfg, icfg)
    cfg isa String && return cfg
    s = join(("$(name)=$(getfield(cfg, name))" for name in fieldnames(PathConfig)), ";")
    unsafe_store!(len, sizeof(s))
    if buf != C_NULL && cap > 0
        GC.@preserve s unsafe_copyto!(buf, pointer(s), min(sizeof(s), cap))
    end
    return nothing
end
"The `PathConfig` Julia builds from packed arrays, as `name=value;...` in field order (for the bridge's tests)."
c_pathconfig_echo(variant::Int, fcfg::Ptr{Float64}, icfg::Ptr{Int}, buf::Ptr{UInt8}, cap::Int, len::Ptr{Int})::Cint =
    guarded(_pathconfig_echo, variant, fcfg, icfg, buf, cap, len)

function _certify(h::Int, w0::Ptr{Float64}, w1::Ptr{Float64}, n::Int, fout::Ptr{Float64}, iout::Ptr{Int})
    m = get(MODELS, h, nothing)
    m === nothing && return nomodel(h)
    err = lengtherror(m, n)
    err === nothing || return err
    c = certify_segment(m, vec64(w0, n), vec64(w1, n))
    unsafe_store!(iout, Int(c.certified), 1)
    unsafe_store!(iout, c.pieces, 2)
    unsafe_store!(fout, c.margin_bound, 1)
    unsafe_store!(fout, c.seconds, 2)
    return nothing
end
"Exact certificate of the segment `w0 -> w1`: (certified, pieces) into `iout`, (margin_bound, seconds) into `fout`."
c_certify(h::Int, w0::Ptr{Float64}, w1::Ptr{Float64}, n::Int, fout::Ptr{Float64}, iout::Ptr{Int})::Cint =
    guarded(_certify, h, w0, w1, n, fout, iout)

function _path(h::Int, wa::Ptr{Float64}, wb::Ptr{Float64}, n::Int, variant::Int, fcfg::Ptr{Float64},
               icfg::Ptr{Int}, refa::Ptr{Float64}, refb::Ptr{Float64}, progress::Ptr{Cvoid}, out::Ptr{Int})
    m = get(MODELS, h, nothing)
    m === nothing && return nomodel(h)
    err = lengtherror(m, n)
    err === nothing || return err
    cfg = unpack_pathconfig(variant, fcfg, icfg)
    cfg isa String && return cfg
    a, b = vec64(wa, n), vec64(wb, n)
    err = endpoints_error(m, a, b)
    err === nothing || return err
    frame = refa == C_NULL ? nothing : (copy(vec64(refa, n)), copy(vec64(refb, n)))
    cb = progress == C_NULL ? nothing : Callback(progress)
    res = find_path(m, a, b, cfg; progress=cb, frame=frame)
    cb !== nothing && cb.stopped && return Stopped()
    id = newid()
    RESULTS[id] = res
    unsafe_store!(out, id, 1)
    unsafe_store!(out, length(res.iteration), 2)
    unsafe_store!(out, size(res.weights, 2), 3)
    unsafe_store!(out, res.iterations, 4)
    return nothing
end
"""
`find_path`; the config as in [`unpack_pathconfig`](@ref); `refa`, `refb` the
distance frame (both NULL: the endpoints); `progress(it, distance)` a C
callback or NULL, called after every iteration.  Writes (result handle, number
of points T, number of kept weight vectors Tk, iterations) into `out`.
"""
c_find_path(h::Int, wa::Ptr{Float64}, wb::Ptr{Float64}, n::Int, variant::Int, fcfg::Ptr{Float64},
            icfg::Ptr{Int}, refa::Ptr{Float64}, refb::Ptr{Float64}, progress::Ptr{Cvoid}, out::Ptr{Int})::Cint =
    guarded(_path, h, wa, wb, n, variant, fcfg, icfg, refa, refb, progress, out)

function _result_copy(r::Int, P::Int, T::Int, Tk::Int, nit::Int, weights::Ptr{Float64}, windex::Ptr{Int},
                      iteration::Ptr{Int}, distance::Ptr{Float64}, tloss::Ptr{Float64}, terr::Ptr{Float64},
                      decisions::Ptr{Int8}, gdref::Ptr{Int8}, counts::Ptr{Int}, wall::Ptr{Float64},
                      arclength::Ptr{Float64})
    res = get(RESULTS, r, nothing)
    res === nothing && return "no Julia path result with handle $r (already freed?)"
    (size(res.weights) == (P, Tk) && length(res.iteration) == T && length(res.decisions) == nit) ||
        return "result buffers do not match the result's sizes"
    copyto!(unsafe_wrap(Array, weights, (P, Tk); own=false), res.weights)
    copyto!(unsafe_wrap(Array, windex, Tk; own=false), res.weight_index)
    copyto!(unsafe_wrap(Array, iteration, T; own=false), res.iteration)
    copyto!(vec64(distance, T), res.distance)
    copyto!(vec64(tloss, T), res.train_loss)
    copyto!(vec64(terr, T), res.train_error)
    copyto!(vec64(arclength, T), res.arclength)
    copyto!(unsafe_wrap(Array, decisions, nit; own=false), res.decisions)
    copyto!(unsafe_wrap(Array, gdref, nit; own=false), res.gd_refused)
    c = unsafe_wrap(Array, counts, 8; own=false)
    c[1] = res.elastic_accepted
    c[2] = res.elastic_repaired
    c[3] = res.elastic_refused
    c[4] = res.gd_accepted
    c[5] = res.gd_refused_total
    c[6] = res.segment_checks
    c[7] = res.segments_certified
    c[8] = res.cert_pieces
    unsafe_store!(wall, res.wall_time, 1)
    unsafe_store!(wall, res.cert_min_margin, 2)
    unsafe_store!(wall, res.cert_seconds, 3)
    return nothing
end
"""
Copy path result `r` into caller buffers (weights P×Tk, i.e. row-major (Tk, P) in NumPy); `counts` (8):
accepted, repaired, refused, GD accepted, GD refused, segment checks, segments certified, pieces;
`wall` (3): wall time, smallest certified margin bound, certification seconds; `arclength` (T).
"""
c_result_copy(r::Int, P::Int, T::Int, Tk::Int, nit::Int, weights::Ptr{Float64}, windex::Ptr{Int},
              iteration::Ptr{Int}, distance::Ptr{Float64}, tloss::Ptr{Float64}, terr::Ptr{Float64},
              decisions::Ptr{Int8}, gdref::Ptr{Int8}, counts::Ptr{Int}, wall::Ptr{Float64},
              arclength::Ptr{Float64})::Cint =
    guarded(_result_copy, r, P, T, Tk, nit, weights, windex, iteration, distance, tloss, terr, decisions, gdref,
            counts, wall, arclength)

function _result_string(r::Int, which::Int, buf::Ptr{UInt8}, cap::Int, len::Ptr{Int})
    res = get(RESULTS, r, nothing)
    res === nothing && return "no Julia path result with handle $r (already freed?)"
    s = which == 0 ? res.status : res.reason
    unsafe_store!(len, sizeof(s))
    if buf != C_NULL && cap > 0
        GC.@preserve s unsafe_copyto!(buf, pointer(s), min(sizeof(s), cap))
    end
    return nothing
end
"Status (`which` = 0) or reason (1) of result `r` as UTF-8 into `buf`; full length into `len`."
c_result_string(r::Int, which::Int, buf::Ptr{UInt8}, cap::Int, len::Ptr{Int})::Cint =
    guarded(_result_string, r, which, buf, cap, len)

_result_free(r::Int) = (delete!(RESULTS, r); nothing)
"Forget path result `r`."
c_result_free(r::Int)::Cint = guarded(_result_free, r)

function _straight_line(h::Int, wa::Ptr{Float64}, wb::Ptr{Float64}, n::Int, alpha::Ptr{Float64}, na::Int,
                        tloss::Ptr{Float64}, terr::Ptr{Float64})
    m = get(MODELS, h, nothing)
    m === nothing && return nomodel(h)
    err = lengtherror(m, n)
    err === nothing || return err
    tl, te = straight_line_at(m, vec64(wa, n), vec64(wb, n), vec64(alpha, na))
    copyto!(vec64(tloss, na), tl)
    copyto!(vec64(terr, na), te)
    return nothing
end
"Loss and error at `w_a + alpha[i] (w_b - w_a)` for the `na` given alphas."
c_straight_line(h::Int, wa::Ptr{Float64}, wb::Ptr{Float64}, n::Int, alpha::Ptr{Float64}, na::Int,
                tloss::Ptr{Float64}, terr::Ptr{Float64})::Cint =
    guarded(_straight_line, h, wa, wb, n, alpha, na, tloss, terr)

"Number of live models and results (for tests of the registries)."
function c_registry_sizes(out::Ptr{Int})::Cint
    unsafe_store!(out, length(MODELS), 1)
    unsafe_store!(out, length(RESULTS), 2)
    return STATUS_OK
end

"Evaluate a deliberate Julia error under `guarded` (the bridge's self-test of error reporting)."
c_raise_test(kind::Int)::Cint = guarded(_raise_test, kind)
_raise_test(kind::Int) = kind == 0 ? "a ConfigError message from Julia" : error("deliberate Julia error for testing")

"""
    cfunction_pointers() -> Vector{Ptr{Cvoid}}

The C entry points, in the order `python/ramble/julia/backend.py` declares them.
"""
function cfunction_pointers()
    return Ptr{Cvoid}[
        @cfunction(c_error_message, Int, (Ptr{UInt8}, Int)),
        @cfunction(c_tcm_new, Cint, (Ptr{Cvoid}, Int, Int, Int, Ptr{Cvoid}, Int, Int, Int, Ptr{Int})),
        @cfunction(c_tcm_free, Cint, (Int,)),
        @cfunction(c_loss_grad, Cint, (Int, Ptr{Float64}, Int, Ptr{Float64}, Ptr{Float64})),
        @cfunction(c_margins, Cint, (Int, Ptr{Float64}, Int, Ptr{Float64})),
        @cfunction(c_evaluate, Cint, (Int, Ptr{Float64}, Int, Ptr{Float64})),
        @cfunction(c_hessian, Cint, (Int, Ptr{Float64}, Int, Ptr{Float64}, Ptr{Float64})),
        @cfunction(c_gd_solve, Cint, (Int, Ptr{Float64}, Int, Ptr{Float64}, Ptr{Int}, Ptr{Cvoid},
                                      Ptr{Float64}, Ptr{Int}, Ptr{Float64})),
        @cfunction(c_find_path, Cint, (Int, Ptr{Float64}, Ptr{Float64}, Int, Int, Ptr{Float64}, Ptr{Int},
                                       Ptr{Float64}, Ptr{Float64}, Ptr{Cvoid}, Ptr{Int})),
        @cfunction(c_result_copy, Cint, (Int, Int, Int, Int, Int, Ptr{Float64}, Ptr{Int}, Ptr{Int}, Ptr{Float64},
                                         Ptr{Float64}, Ptr{Float64}, Ptr{Int8}, Ptr{Int8}, Ptr{Int}, Ptr{Float64},
                                         Ptr{Float64})),
        @cfunction(c_result_string, Cint, (Int, Int, Ptr{UInt8}, Int, Ptr{Int})),
        @cfunction(c_result_free, Cint, (Int,)),
        @cfunction(c_straight_line, Cint, (Int, Ptr{Float64}, Ptr{Float64}, Int, Ptr{Float64}, Int,
                                           Ptr{Float64}, Ptr{Float64})),
        @cfunction(c_registry_sizes, Cint, (Ptr{Int},)),
        @cfunction(c_raise_test, Cint, (Int,)),
        @cfunction(c_certify, Cint, (Int, Ptr{Float64}, Ptr{Float64}, Int, Ptr{Float64}, Ptr{Int})),
        @cfunction(c_pathconfig_echo, Cint, (Int, Ptr{Float64}, Ptr{Int}, Ptr{UInt8}, Int, Ptr{Int})),
    ]
end

"""
    write_pointers(buf::Ptr{Int}, cap::Int) -> Int

Write the entry-point addresses into `buf` (room for `cap`); returns how many
there are.  Python evaluates this once after loading the module.
"""
function write_pointers(buf::Ptr{Int}, cap::Int)
    ps = cfunction_pointers()
    for (i, p) in enumerate(ps)
        i <= cap && unsafe_store!(buf, Int(p), i)
    end
    return length(ps)
end

end # module Bridge
