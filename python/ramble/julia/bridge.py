"""Julia inside this Python process: finding it, starting it once, calling ``Ramble``.

The TCM experiments run in the Julia module ``Ramble`` (``julia/src/Ramble.jl``),
called in-process.  This module finds a Julia installation, starts the Julia
runtime in this process through one of two bridges, loads ``Ramble`` and hands
:mod:`ramble.julia.backend` C function pointers into it.

Finding Julia
    ``RAMBLE_JULIA`` (path to the ``julia`` executable), else ``julia`` on
    ``PATH``.  One short ``julia`` subprocess reports its version, ``Sys.BINDIR``,
    system image and ``libjulia``; nothing is hard-coded.  Missing Julia raises
    :class:`ramble.errors.JuliaError` saying how to install it.

Choosing the bridge (``RAMBLE_JULIA_BRIDGE=auto|juliacall|embed``, default auto)
    ``juliacall`` (PyPI) is used when it can start without waiting on the
    network: it is installed, the Julia found is >= 1.10, and PythonCall.jl is
    already installed in juliapkg's Julia project.  juliapkg runs offline
    (``PYTHON_JULIAPKG_OFFLINE=yes``) and is pointed at the Julia found
    (``PYTHON_JULIAPKG_EXE``) unless ``RAMBLE_JULIA_ONLINE=1``, in which case
    juliapkg may install PythonCall (network) on first use.  Otherwise
    ramble *embeds* the system ``libjulia`` with ctypes: ``jl_parse_opts``
    (``--handle-signals=no --startup-file=no --threads=1``),
    ``jl_init_with_image``, ``jl_eval_string``, and ``jl_atexit_hook`` at
    Python exit.  If Julia is already running in this process (juliacall
    imported by the user), that runtime is used.  ``RAMBLE_JULIA_BRIDGE=juliacall``
    raises JuliaError, with the reason, when juliacall cannot start; it never
    falls back silently.  Either way the same Julia code runs: the bridge only
    starts the runtime and evaluates a few bootstrap strings; all calls then go
    through ``@cfunction`` pointers called with ctypes, with NumPy arrays passed
    as raw pointers (zero-copy).

The module
    ``include``d from ``RAMBLE_JULIA_SRC`` if set, else from the package's
    ``julia_src/Ramble.jl`` (a link to ``julia/src`` in a source checkout, the
    files themselves in an installed wheel).

Once per process, lazily
    Julia is started on the first call that needs it (:func:`get_bridge`), and
    stays for the life of the process: a Julia runtime cannot be restarted, so
    changing ``RAMBLE_JULIA*`` afterwards has no effect, and a failed start is
    remembered and re-raised.  All calls into Julia must come from the thread
    that started it (Julia 1.5 cannot adopt foreign threads); another thread
    gets a JuliaError.  Calls hold the GIL.

Signals and ``faulthandler``
    Julia is started with ``--handle-signals=no`` (juliacall's default too), so
    it installs no signal handlers and Python keeps its own: Ctrl-C stays
    Python's ``KeyboardInterrupt``.  Julia's start still blocks SIGINT, SIGTERM
    and others in the starting thread; the bridge restores the thread's signal
    mask right after, or no signal would reach Python (nor any child process,
    which inherits the mask).  Long Julia calls (paths, training) call a
    Python callback every iteration (every 256 epochs in training); the
    pending ``KeyboardInterrupt`` is raised there, Julia unwinds, and the call
    re-raises it.  Without Julia's handlers a single-threaded Julia does not
    rely on SIGSEGV (its GC safepoints only fault when other Julia threads must
    be stopped), so pytest's ``faulthandler`` plugin can stay enabled: no
    ``-p no:faulthandler`` is needed.  The flip side: a real segfault or a
    stack overflow inside Julia kills the process (with faulthandler's
    traceback) instead of becoming a Julia exception.  This is also why
    ``--threads=1`` is forced: Julia threads with no signal handlers are unsafe.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ramble.errors import ConfigError, JuliaError
from ramble.storage import faults

ENV_JULIA = "RAMBLE_JULIA"
ENV_BRIDGE = "RAMBLE_JULIA_BRIDGE"
ENV_SRC = "RAMBLE_JULIA_SRC"
ENV_ONLINE = "RAMBLE_JULIA_ONLINE"
BRIDGES: tuple[str, ...] = ("auto", "juliacall", "embed")

#: ABI version of ``Ramble.Bridge`` this Python code speaks.
ABI = 2

#: Oldest Julia juliacall (PythonCall 0.9) runs on.
JULIACALL_MIN_VERSION = (1, 10)

INSTALL_HINT = (
    "Install Julia (1.5 or newer): on Debian 11 `apt-get install julia` (1.5.3; on Debian 12 "
    ".ci/install-julia.sh installs that package), or juliaup (https://github.com/JuliaLang/juliaup), "
    "or the official binaries (https://julialang.org/downloads); then put `julia` on PATH or set "
    f"{ENV_JULIA}=/path/to/bin/julia.  The Python backend (--backend python) needs no Julia."
)

_PROBE_TIMEOUT = 120.0

# Julia code printing what ramble needs to embed this Julia, one item per line,
# then checking that an exception thrown from compiled code can be caught.
# Libdl.dlpath("libjulia") crashes Debian's Julia 1.5.3 on Debian 12 (it
# throws internally, see below), so libjulia is found among the libraries the
# process has loaded.
_PROBE_SCRIPT = r"""
using Libdl
libs = filter(p -> occursin(r"^libjulia(\.|-?\d*\.dll$)", basename(p)), Libdl.dllist())
lib = isempty(libs) ? joinpath(Sys.BINDIR, Base.LIBDIR, "libjulia." * Libdl.dlext) : realpath(first(libs))
print(VERSION, "\n", Sys.BINDIR, "\n", unsafe_string(Base.JLOptions().image_file), "\n", lib, "\n")
flush(stdout)
__f(x) = x > 0 ? error("probe") : 0
__g() = try __f(1) catch; 1 end
print(__g() == 1 ? "exceptions-ok\n" : "exceptions-wrong\n")
"""

#: Why a Julia whose probe died after reporting itself is still usable, and how to fix it.
EXCEPTIONS_BROKEN = (
    "this Julia crashes when an exception is thrown from compiled code (Debian 11's julia 1.5.3 on Debian 12's "
    "libunwind8 1.6, whose unwinder segfaults on Julia's JIT frames). ramble's Julia code never throws in "
    "expected situations, so it runs, but a Julia error would kill the process instead of becoming a JuliaError. "
    "Fix: `apt-get install --allow-downgrades libunwind8/bullseye`, or use an official Julia build"
)


def _load_llvm_users_first() -> None:
    """Load what must win symbol lookups before libjulia's dependencies: triton's LLVM, the GCC unwinder.

    triton's LLVM (pulled in by torch.func / torch.compile):
    libjulia must be loaded RTLD_GLOBAL (its own ccalls look symbols up in the
    global scope), and it brings the system libLLVM with it.  triton's
    libtriton.so carries a private LLVM with default-visibility symbols: loaded
    *after* Julia, its static initialisers bind to Julia's LLVM and crash the
    process (seen with torch.func.hessian after a Julia call).  Loaded first,
    each LLVM binds to itself.
    """
    import importlib.util

    try:
        if importlib.util.find_spec("triton") is not None:
            importlib.import_module("triton._C.libtriton")
    except Exception:  # noqa: BLE001 - a broken triton only matters if torch loads it later
        pass
    # libjulia brings libunwind.so.8 into the global scope, and libunwind
    # exports _Unwind_Resume & co.: every C++ extension loaded afterwards
    # (matplotlib's ft2font, ...) would unwind its exceptions through it and
    # abort.  With the GCC unwinder global first, they keep binding to it.
    try:
        ctypes.CDLL("libgcc_s.so.1", mode=ctypes.RTLD_GLOBAL)
    except OSError:
        pass


@dataclass(frozen=True)
class JuliaInstall:
    """A Julia installation, as reported by its own executable."""

    executable: str
    version: tuple[int, int, int]
    version_string: str
    bindir: str
    image: str
    libjulia: str
    exceptions_ok: bool = True


_install_cache: dict[str, JuliaInstall] = {}


def locate_julia() -> str:
    """Path of the julia executable: ``$RAMBLE_JULIA``, else ``julia`` on PATH; JuliaError if neither."""
    env = os.environ.get(ENV_JULIA)
    if env:
        path = shutil.which(env) if os.sep not in env else (env if os.access(env, os.X_OK) and os.path.isfile(env) else None)
        if path is None:
            raise JuliaError(f"{ENV_JULIA}={env} is not an executable Julia. {INSTALL_HINT}")
        return os.path.abspath(path)
    path = shutil.which("julia")
    if path is None:
        raise JuliaError(f"Julia not found: no `julia` on PATH and {ENV_JULIA} is not set. {INSTALL_HINT}")
    return os.path.abspath(path)


def probe_julia(executable: Optional[str] = None) -> JuliaInstall:
    """Ask ``executable`` (default :func:`locate_julia`) for its version and library paths (cached)."""
    exe = executable or locate_julia()
    if exe in _install_cache:
        return _install_cache[exe]
    cmd = [exe, "--startup-file=no", "--history-file=no", "-O0", "-e", _PROBE_SCRIPT]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        raise JuliaError(f"could not run {exe}: {e}. {INSTALL_HINT}") from None
    lines = proc.stdout.splitlines()
    # Killed by a signal after reporting itself: the exception self-test crashed.
    exceptions_ok = proc.returncode == 0 and len(lines) >= 5 and lines[4] == "exceptions-ok"
    if len(lines) < 4 or (proc.returncode != 0 and proc.returncode >= 0):
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise JuliaError(
            f"{exe} did not report its installation (exit {proc.returncode}): "
            f"{detail[0] if detail else 'no output'}. {INSTALL_HINT}"
        )
    vstr, bindir, image, lib = lines[:4]
    try:
        core = vstr.split("-")[0].split("+")[0]
        parts = tuple(int(p) for p in core.split(".")[:3])
        version = (parts + (0, 0, 0))[:3]
    except ValueError:
        raise JuliaError(f"{exe} reported an unreadable version {vstr!r}") from None
    if version < (1, 5, 0):
        raise JuliaError(f"Julia {vstr} at {exe} is too old: ramble needs Julia 1.5 or newer. {INSTALL_HINT}")
    for what, path in (("system image", image), ("libjulia", lib)):
        if not os.path.isfile(path):
            raise JuliaError(f"{exe} reported its {what} at {path}, which does not exist")
    info = JuliaInstall(exe, version, vstr, bindir, image, lib, exceptions_ok)  # type: ignore[arg-type]
    _install_cache[exe] = info
    return info


def julia_source() -> Path:
    """Path of ``Ramble.jl``: ``$RAMBLE_JULIA_SRC``, or the package's ``julia_src/Ramble.jl``.

    ``julia_src`` is a link to ``julia/src`` in a source checkout and a copy
    of its files in an installed wheel.
    """
    env = os.environ.get(ENV_SRC)
    path = Path(env) if env else Path(__file__).parents[1] / "julia_src" / "Ramble.jl"
    if path.is_dir():
        path = path / "Ramble.jl"
    if not path.is_file():
        raise JuliaError(
            f"the Julia module Ramble.jl was not found at {path}; reinstall ramble (its wheel ships "
            f"ramble/julia_src/*.jl) or set {ENV_SRC}=/path/to/julia/src/Ramble.jl"
        )
    return path


def _online() -> bool:
    return os.environ.get(ENV_ONLINE, "").strip().lower() in ("1", "yes", "true", "on")


def _juliapkg_project() -> str:
    """The Julia project juliapkg (and so juliacall) uses, computed as juliapkg does, without importing it."""
    for key in ("PYTHON_JULIACALL_PROJECT", "PYTHON_JULIAPKG_PROJECT"):
        if os.environ.get(key):
            return os.environ[key]
    if sys.prefix != sys.base_prefix:
        return os.path.join(sys.prefix, "julia_env")
    if os.environ.get("CONDA_PREFIX"):
        return os.path.join(os.environ["CONDA_PREFIX"], "julia_env")
    depot = os.environ.get("JULIA_DEPOT_PATH", "").split(os.pathsep)[0] or os.path.join(os.path.expanduser("~"), ".julia")
    return os.path.join(depot, "environments", "pyjuliapkg")


def _juliacall_running() -> bool:
    mod = sys.modules.get("juliacall")
    return bool(mod is not None and getattr(mod, "CONFIG", {}).get("inited"))


def juliacall_unavailable(install: JuliaInstall) -> Optional[str]:
    """Why juliacall cannot start here without the network, or None if it can.

    Never imports juliacall (importing it starts Julia) and never touches the
    network; may run one short ``julia`` subprocess to look for PythonCall.
    """
    if _juliacall_running():
        return None
    if importlib.util.find_spec("juliacall") is None:
        return "juliacall is not installed (pip install juliacall)"
    if install.version[:2] < JULIACALL_MIN_VERSION:
        return (
            f"Julia {install.version_string} at {install.executable} is older than "
            f"{'.'.join(map(str, JULIACALL_MIN_VERSION))}, which juliacall needs"
        )
    if _online():
        return None
    project = _juliapkg_project()
    script = 'print(Base.find_package("PythonCall") === nothing ? "no" : "yes")'
    try:
        proc = subprocess.run(
            [install.executable, "--startup-file=no", "--history-file=no", f"--project={project}", "-e", script],
            capture_output=True, text=True, timeout=_PROBE_TIMEOUT, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"could not check for PythonCall.jl: {e}"
    if proc.stdout.strip() != "yes":
        return (
            f"PythonCall.jl is not installed in juliapkg's Julia project {project} and installing it needs "
            f"the network (allow it with {ENV_ONLINE}=1)"
        )
    return None


def choose_bridge(install: JuliaInstall) -> tuple[str, str]:
    """The bridge to use, ``"juliacall"`` or ``"embed"``, and why juliacall is not used ("" if it is)."""
    forced = os.environ.get(ENV_BRIDGE, "auto").strip().lower() or "auto"
    if forced not in BRIDGES:
        raise JuliaError(f"{ENV_BRIDGE}={forced!r}: expected one of {', '.join(BRIDGES)}")
    if forced == "embed":
        if _juliacall_running():
            return "juliacall", ""  # Julia already runs in this process under juliacall: use it
        return "embed", f"{ENV_BRIDGE}=embed"
    why_not = juliacall_unavailable(install)
    if why_not is None:
        return "juliacall", ""
    if forced == "juliacall":
        raise JuliaError(
            f"{ENV_BRIDGE}=juliacall but juliacall cannot start: {why_not}. "
            f"Unset {ENV_BRIDGE} (or set it to embed) to embed {install.executable} through its libjulia instead."
        )
    return "embed", why_not


def _jl_string(s: str) -> str:
    """``s`` as a Julia string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


# Defined in Main before anything else: evaluates code given by pointer and
# keeps the message of the last failure, so both bridges report Julia errors
# the same way.
_BOOT = r"""
module __RambleBoot
const ERR = Ref{String}("")
function evalcode(p::Ptr{UInt8}, n::Int)::Int
    code = unsafe_string(p, n)
    try
        v = Base.include_string(Main, code, "ramble-bridge")
        return v isa Integer ? Int(v) : 0
    catch e
        err = e isa LoadError ? e.error : e
        ERR[] = try
            msg = sprint(showerror, err)
            tname = string(nameof(typeof(err)))
            startswith(msg, tname) ? msg : string(tname, ": ", msg)
        catch
            string(typeof(err))
        end
        return typemin(Int)
    end
end
function copyerr(p::Ptr{UInt8}, cap::Int)::Int
    s = ERR[]
    GC.@preserve s unsafe_copyto!(p, pointer(s), min(sizeof(s), cap))
    return sizeof(s)
end
end
"""

_FAIL = -(2**63)

# The C entry points of Ramble.Bridge, in the order of Ramble.Bridge.cfunction_pointers().
_I64 = ctypes.c_int64
_PTR = ctypes.c_void_p
_INT = ctypes.c_int
SIGNATURES: tuple[tuple[str, Any, list], ...] = (
    ("error_message", _I64, [_PTR, _I64]),
    ("tcm_new", _INT, [_PTR, _I64, _I64, _I64, _PTR, _I64, _I64, _I64, _PTR]),
    ("tcm_free", _INT, [_I64]),
    ("loss_grad", _INT, [_I64, _PTR, _I64, _PTR, _PTR]),
    ("margins", _INT, [_I64, _PTR, _I64, _PTR]),
    ("evaluate", _INT, [_I64, _PTR, _I64, _PTR]),
    ("hessian", _INT, [_I64, _PTR, _I64, _PTR, _PTR]),
    ("gd_solve", _INT, [_I64, _PTR, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR]),
    ("find_path", _INT, [_I64, _PTR, _PTR, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR]),
    ("result_copy", _INT, [_I64] * 5 + [_PTR] * 11),
    ("result_string", _INT, [_I64, _I64, _PTR, _I64, _PTR]),
    ("result_free", _INT, [_I64]),
    ("straight_line", _INT, [_I64, _PTR, _PTR, _I64, _PTR, _I64, _PTR, _PTR]),
    ("registry_sizes", _INT, [_PTR]),
    ("raise_test", _INT, [_I64]),
    ("certify", _INT, [_I64, _PTR, _PTR, _I64, _PTR, _PTR]),
    ("pathconfig_echo", _INT, [_I64, _PTR, _PTR, _PTR, _I64, _PTR]),
)

#: C type of the callbacks Julia calls during long runs: ``int cb(int64 iteration, double value)``;
#: non-zero stops the run.
CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, ctypes.c_double)

STATUS_OK, STATUS_CONFIG, STATUS_ERROR, STATUS_INTERRUPTED = 0, 1, 2, 3


class Callback:
    """A Python callable wrapped for Julia; an exception it raises is kept and re-raised by :meth:`Bridge.call`."""

    def __init__(self, fn: Optional[Callable[[int, float], Any]]) -> None:
        self.fn = fn
        self.exc: Optional[BaseException] = None
        self.c = CALLBACK(self._call)

    def _call(self, it: int, value: float) -> int:
        try:
            if self.fn is not None:
                self.fn(int(it), float(value))
            return 0
        except BaseException as e:  # noqa: BLE001 - KeyboardInterrupt too: Julia unwinds, then we re-raise
            self.exc = e
            return 1

    @property
    def address(self) -> int:
        return ctypes.cast(self.c, ctypes.c_void_p).value or 0


class Bridge:
    """The started Julia runtime with ``Ramble`` loaded (one per process, see :func:`get_bridge`)."""

    def __init__(self, install: JuliaInstall, kind: str, reason: str, source: Path) -> None:
        self.install = install
        self.kind = kind
        self.reason = reason
        self.source = source
        self.thread = threading.get_ident()
        self.lock = threading.RLock()
        self.closed = False
        self._lib: Optional[ctypes.CDLL] = None
        self._jl: Any = None
        self.funcs: dict[str, Any] = {}
        self.note = ""

    # -- starting ----------------------------------------------------------
    def start(self) -> None:
        # Julia's start blocks SIGINT, SIGTERM and others in the calling thread even with
        # --handle-signals=no; left so, Ctrl-C and a scheduler's SIGTERM would never reach Python,
        # and every child process would inherit the blocked mask.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        try:
            if self.kind == "juliacall":
                self._start_juliacall()
            else:
                self._start_embedded()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self._raw_eval(_BOOT, boot=True)
        abi = self.eval(f"include({_jl_string(str(self.source))}); Ramble.Bridge.ABI")
        if abi != ABI:
            raise JuliaError(f"{self.source} speaks bridge ABI {abi}, this ramble expects {ABI}: update the checkout")
        buf = (ctypes.c_int64 * 64)()
        n = self.eval(f"Ramble.Bridge.write_pointers(Ptr{{Int}}({ctypes.addressof(buf)}), 64)")
        if n != len(SIGNATURES):
            raise JuliaError(f"Ramble.Bridge exports {n} entry points, ramble expects {len(SIGNATURES)}")
        for (name, restype, argtypes), addr in zip(SIGNATURES, buf[:n]):
            self.funcs[name] = ctypes.PYFUNCTYPE(restype, *argtypes)(addr)
        if not self.install.exceptions_ok:
            warnings.warn(EXCEPTIONS_BROKEN, RuntimeWarning, stacklevel=3)

    def _start_juliacall(self) -> None:
        if not _juliacall_running():
            os.environ.setdefault("PYTHON_JULIAPKG_EXE", self.install.executable)
            if not _online():
                os.environ["PYTHON_JULIAPKG_OFFLINE"] = "yes"
            os.environ.setdefault("PYTHON_JULIACALL_HANDLE_SIGNALS", "no")
            os.environ.setdefault("PYTHON_JULIACALL_THREADS", "1")
        try:
            import juliacall  # noqa: F401  (starts Julia)
        except Exception as e:  # noqa: BLE001
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise JuliaError(f"juliacall could not start Julia: {first}. Set {ENV_BRIDGE}=embed to embed libjulia instead.") from None
        self._jl = sys.modules["juliacall"].Main

    def _start_embedded(self) -> None:
        inst = self.install
        try:
            _load_llvm_users_first()
            lib = ctypes.PyDLL(inst.libjulia, mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            raise JuliaError(f"could not load {inst.libjulia}: {e}") from None
        lib.jl_eval_string.argtypes = [ctypes.c_char_p]
        lib.jl_eval_string.restype = ctypes.c_void_p
        lib.jl_exception_occurred.restype = ctypes.c_void_p
        lib.jl_typeof_str.argtypes = [ctypes.c_void_p]
        lib.jl_typeof_str.restype = ctypes.c_char_p
        lib.jl_unbox_int64.argtypes = [ctypes.c_void_p]
        lib.jl_unbox_int64.restype = ctypes.c_int64
        lib.jl_is_initialized.restype = ctypes.c_int
        self._lib = lib
        if lib.jl_is_initialized():
            self.note = "Julia was already running in this process; ramble uses that runtime"
            return
        threads = "--threads=1,0" if inst.version >= (1, 9, 0) else "--threads=1"
        args = [inst.executable, "--handle-signals=no", "--startup-file=no", "--history-file=no", threads]
        argv_arr = (ctypes.c_char_p * (len(args) + 1))(*[a.encode() for a in args], None)
        argc = ctypes.c_int(len(args))
        argv = ctypes.cast(argv_arr, ctypes.POINTER(ctypes.c_char_p))
        lib.jl_parse_opts.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.jl_parse_opts.restype = None
        lib.jl_parse_opts(ctypes.byref(argc), ctypes.byref(argv))
        try:
            init = lib.jl_init_with_image__threading
        except AttributeError:
            init = lib.jl_init_with_image
        init.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        init.restype = None
        init(inst.bindir.encode(), inst.image.encode())
        atexit.register(self._atexit)
        self._argv_keepalive = argv_arr

    def _atexit(self) -> None:
        with self.lock:
            if self.closed or self._lib is None:
                return
            self.closed = True
            hook = self._lib.jl_atexit_hook
            hook.argtypes = [ctypes.c_int]
            hook.restype = None
            hook(0)

    # -- evaluating --------------------------------------------------------
    def _raw_eval(self, code: str, boot: bool = False) -> int:
        """Evaluate ``code`` at Julia's top level; its value must be an Int (or nothing)."""
        if self._jl is not None:
            try:
                v = self._jl.seval(code)
            except Exception as e:  # noqa: BLE001 - juliacall.JuliaError
                raise JuliaError(f"Julia error: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
            return int(v) if isinstance(v, int) else 0
        assert self._lib is not None
        r = self._lib.jl_eval_string(code.encode())
        if not r:
            exc = self._lib.jl_exception_occurred()
            kind = self._lib.jl_typeof_str(exc).decode(errors="replace") if exc else "unknown error"
            what = "starting the Julia bridge" if boot else "evaluating bridge code"
            raise JuliaError(f"Julia error while {what}: {kind}")
        return int(self._lib.jl_unbox_int64(r)) if self._lib.jl_typeof_str(r) == b"Int64" else 0

    def eval(self, code: str) -> int:
        """Evaluate Julia ``code`` (in Main) and return its value if an Int (else 0); JuliaError with Julia's message on failure."""
        self._check_thread()
        with self.lock:
            buf = ctypes.create_string_buffer(code.encode())
            n = len(buf.value)
            v = self._raw_eval(f"__RambleBoot.evalcode(Ptr{{UInt8}}({ctypes.addressof(buf)}), {n})")
            if v != _FAIL:
                return v
            size = self._raw_eval("sizeof(__RambleBoot.ERR[])")
            msg = ctypes.create_string_buffer(size + 1)
            self._raw_eval(f"__RambleBoot.copyerr(Ptr{{UInt8}}({ctypes.addressof(msg)}), {size})")
            raise JuliaError("Julia error: " + _summarise(msg.raw[:size].decode(errors="replace")))

    # -- calling entry points ---------------------------------------------
    def _check_thread(self) -> None:
        if self.closed:
            raise JuliaError("the Julia runtime has been shut down (Python is exiting)")
        if threading.get_ident() != self.thread:
            raise JuliaError(
                "the Julia backend must be called from the thread that started Julia "
                "(Julia is initialised once per process and cannot adopt other threads)"
            )

    def call(self, name: str, *args: Any, callback: Optional[Callback] = None) -> int:
        """Call entry point ``name``; raise ConfigError/JuliaError (or the callback's exception) on a non-zero status."""
        self._check_thread()
        if faults.point(f"julia:{name}") == "julia":
            name, args = "raise_test", (1,)  # a real Julia exception, thrown where this call would have run
        with self.lock:
            status = self.funcs[name](*args)
            if status == STATUS_OK:
                return status
            msg = self.error_message()
        if status == STATUS_INTERRUPTED and callback is not None and callback.exc is not None:
            raise callback.exc
        if status == STATUS_CONFIG:
            raise ConfigError(msg)
        raise JuliaError(f"Julia error in {name}: {msg}")

    def error_message(self) -> str:
        f = self.funcs["error_message"]
        n = f(None, 0)
        buf = ctypes.create_string_buffer(max(n, 1))
        f(ctypes.addressof(buf), n)
        return buf.raw[:n].decode(errors="replace")

    def info(self) -> dict:
        return {
            "julia": self.install.executable,
            "version": self.install.version_string,
            "bridge": self.kind,
            "juliacall_not_used": self.reason,
            "libjulia": self.install.libjulia,
            "sysimage": self.install.image,
            "bindir": self.install.bindir,
            "source": str(self.source),
            **({"note": self.note} if self.note else {}),
            "exceptions_ok": self.install.exceptions_ok,
            "started": True,
            **({} if self.install.exceptions_ok else {"warning": EXCEPTIONS_BROKEN}),
        }


def _summarise(msg: str, max_lines: int = 8) -> str:
    """The first lines of a Julia error message."""
    lines = [ln.rstrip() for ln in msg.strip().splitlines() if ln.strip()]
    return "\n".join(lines[:max_lines]) if lines else "unknown error"


_bridge: Optional[Bridge] = None
_bridge_error: Optional[JuliaError] = None
_start_lock = threading.Lock()


def get_bridge() -> Bridge:
    """The process's Julia bridge, started on first use (once per process; a failure is remembered)."""
    global _bridge, _bridge_error
    if _bridge is not None:
        return _bridge
    with _start_lock:
        if _bridge is not None:
            return _bridge
        if _bridge_error is not None:
            raise _bridge_error
        try:
            install = probe_julia()
            kind, reason = choose_bridge(install)
            source = julia_source()
            bridge = Bridge(install, kind, reason, source)
            bridge.start()
        except JuliaError as e:
            _bridge_error = e
            raise
        except Exception as e:  # noqa: BLE001 - ctypes/OS failures while starting
            _bridge_error = JuliaError(f"could not start Julia: {type(e).__name__}: {e}")
            raise _bridge_error from e
        _bridge = bridge
        return bridge


def is_started() -> bool:
    """True once Julia runs in this process (through ramble)."""
    return _bridge is not None


def bridge_info(start: bool = True) -> dict:
    """What ``ramble doctor`` shows: Julia path, version, bridge used and why juliacall was not used.

    With ``start`` (default) Julia is started if it is not yet (a few seconds
    once per process).  Never raises: a problem is reported under ``"error"``.
    """
    if _bridge is not None:
        return _bridge.info()
    info: dict = {"started": False}
    try:
        install = probe_julia()
        info.update(julia=install.executable, version=install.version_string, libjulia=install.libjulia,
                    sysimage=install.image, bindir=install.bindir, exceptions_ok=install.exceptions_ok)
        if not install.exceptions_ok:
            info["warning"] = EXCEPTIONS_BROKEN
        kind, reason = choose_bridge(install)
        info.update(bridge=kind, juliacall_not_used=reason)
        info["source"] = str(julia_source())
        if start:
            return get_bridge().info()
    except JuliaError as e:
        info["error"] = str(e)
    return info
