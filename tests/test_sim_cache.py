"""The simulation cache of :func:`eventconv.sim.runner.run_cocotb` (issue 19): safe for runs at
once, rebuilds a damaged entry, keeps only the most recently used entries, and a SIGTERM to
``eventconv run --backend rtl`` leaves no temporary folder behind.

A stand-in for cocotb's runner keeps the tests of the cache's bookkeeping fast; the damaged
entry and the SIGTERM are tried on the real engine (a 4x4 layer, Icarus).
"""

import fcntl
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cocotb_tools.runner
import numpy as np
import pytest

from eventconv.backends import rtl
from eventconv.core.kernels import filter_bank_config
from eventconv.core.model import run_model
from eventconv.sim import runner
from eventconv.sim.harness import harness_public
from eventconv.sim.runner import SimulationFailed, build_dir_for, run_cocotb, verilator_public

EVENTCONV = str(Path(sys.executable).parent / "eventconv")


class FakeRunner:
    """cocotb's runner as the cache sees it: a build that takes a while and fails if another
    build runs at the same moment, and a test that answers the case from the built file."""

    def __init__(self, folder, fail=False):
        self.folder, self.fail = Path(folder), fail

    def build(self, *, build_dir, **_):
        if (Path(build_dir) / "sim.vvp").exists():
            return   # as cocotb's Icarus runner: a simulation newer than its source is kept
        busy = self.folder / "building"
        try:
            busy.mkdir()
        except FileExistsError:
            raise RuntimeError("two builds at once") from None
        try:
            with open(self.folder / "builds", "a") as log:
                log.write(f"{build_dir}\n")
            time.sleep(0.5)
            Path(build_dir).mkdir(parents=True, exist_ok=True)
            (Path(build_dir) / "sim.vvp").write_text("built")
        finally:
            busy.rmdir()

    def test(self, *, build_dir, extra_env, log_file=None, **_):
        if log_file is not None:
            Path(log_file).write_text("VCD info: nothing\nERROR: the simulator crashed\n")
        if self.fail:
            raise SystemExit(1)   # what cocotb's runner does when the simulator fails
        built = (Path(build_dir) / "sim.vvp").read_text()
        case = json.loads(Path(extra_env["EVENTCONV_CASE"]).read_text())
        Path(extra_env["EVENTCONV_RESULT"]).write_text(json.dumps({"case": case,
                                                                   "built": built}))

    def builds(self):
        path = self.folder / "builds"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def fake(tmp_path, monkeypatch):
    fake = FakeRunner(tmp_path)
    monkeypatch.setattr(cocotb_tools.runner, "get_runner", lambda simulator: fake)
    return fake


def run_fake(root, design, case=0, **kwargs):
    return run_cocotb(verilog_text=f"module {design}; endmodule\n", toplevel="top",
                      test_module="unused", case=case, build_root=root,
                      keep=runner.KEEP_ENTRIES, **kwargs)


def entry_of(root, design):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return build_dir_for(Path(root) / worker, "top", f"module {design}; endmodule\n",
                         "icarus").resolve()


def test_two_cold_runs_at_once_build_once_and_both_succeed(fake, tmp_path):
    root = tmp_path / "root"

    def one(index):
        result = run_fake(root, "a", case=index)
        (tmp_path / f"result-{index}").write_text(json.dumps(result))

    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=one, args=(i,)) for i in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0, 0]
    for i in range(2):
        assert json.loads((tmp_path / f"result-{i}").read_text()) == {"case": i, "built": "built"}
    assert len(fake.builds()) == 1


def test_a_damaged_entry_is_rebuilt(fake, tmp_path):
    root = tmp_path / "root"
    run_fake(root, "a")
    entry = entry_of(root, "a")
    (entry / "sim.vvp").write_text("bui")   # truncated
    assert run_fake(root, "a")["built"] == "built"
    (entry / "sim.vvp").unlink()   # missing
    assert run_fake(root, "a")["built"] == "built"
    assert len(fake.builds()) == 3
    assert run_fake(root, "a")["built"] == "built"   # a sound entry is reused
    assert len(fake.builds()) == 3


def test_a_build_cut_short_leaves_nothing_a_later_run_trusts(fake, tmp_path, monkeypatch):
    root = tmp_path / "root"

    def interrupted(*, build_dir, **_):
        Path(build_dir).mkdir(parents=True, exist_ok=True)
        (Path(build_dir) / "sim.vvp").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(fake, "build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_fake(root, "a")
    monkeypatch.undo()
    monkeypatch.setattr(cocotb_tools.runner, "get_runner", lambda simulator: fake)
    assert run_fake(root, "a")["built"] == "built"


def test_a_failed_simulation_is_one_clear_error(tmp_path, monkeypatch):
    fake = FakeRunner(tmp_path, fail=True)
    monkeypatch.setattr(cocotb_tools.runner, "get_runner", lambda simulator: fake)
    with pytest.raises(SimulationFailed) as info:
        run_fake(tmp_path / "root", "a")
    assert isinstance(info.value, RuntimeError)
    assert "gave no result" in str(info.value) and "the simulator crashed" in str(info.value)


def test_only_the_most_recently_used_entries_are_kept(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "KEEP_ENTRIES", 2)
    root = tmp_path / "root"
    for design in "abc":
        run_fake(root, design)
    assert not entry_of(root, "a").exists()
    assert not entry_of(root, "a").with_name(entry_of(root, "a").name + ".lock").exists()
    run_fake(root, "b")   # reused: now more recent than c
    assert len(fake.builds()) == 3
    c = entry_of(root, "c")
    with open(c.with_name(c.name + ".lock")) as lock:   # another process runs c
        fcntl.flock(lock, fcntl.LOCK_SH)
        run_fake(root, "d")
        assert c.exists()
    run_fake(root, "e")
    kept = sorted(p.name for p in entry_of(root, "a").parent.iterdir() if p.is_dir())
    assert kept == sorted(entry_of(root, d).name for d in "de")


# The real engine: a 4x4 layer under Icarus.

CONFIG = filter_bank_config(4, 4, channels_out=2, threshold=6)


def frames(count):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=CONFIG.frames_shape(count), dtype=np.uint8)


def test_a_truncated_simulation_is_rebuilt(tmp_path):
    expected = rtl.run(CONFIG, frames(2), build_root=tmp_path)
    root = tmp_path / os.environ.get("PYTEST_XDIST_WORKER", "")
    entry, = (p for p in root.glob("eventconv_engine_harness-*") if p.is_dir())
    vvp = entry / "sim.vvp"
    vvp.write_bytes(vvp.read_bytes()[:vvp.stat().st_size // 2])
    again = rtl.run(CONFIG, frames(2), build_root=tmp_path)
    for key in expected:
        np.testing.assert_array_equal(again[key], expected[key])


def cache_with_compiled_yosys(tmp_path):
    """An empty XDG cache but for wasmtime's, so that Yosys is not compiled again (~10 s)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    if (home / "wasmtime").is_dir():
        (cache / "wasmtime").symlink_to(home / "wasmtime")
    return cache


def test_sigterm_during_a_run_leaves_no_temporary_folder(tmp_path):
    import platformdirs
    config, frames_path, temp = tmp_path / "cfg.json", tmp_path / "frames.npy", tmp_path / "tmp"
    config.write_text(json.dumps(CONFIG.to_dict()))
    np.save(frames_path, frames(200))
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "XDG_CACHE_HOME": str(cache_with_compiled_yosys(
        tmp_path)), "YOWASP_CACHE_DIR": platformdirs.user_cache_dir("YoWASP", appauthor=False)}
    process = subprocess.Popen([EVENTCONV, "run", "--config", config, "--frames", frames_path,
                                "--backend", "rtl", "--out", tmp_path / "out.npz", "--quiet"],
                               env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(temp.glob("eventconv-*/progress")):   # the first frame is simulated
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) != 0
    assert not list(temp.glob("eventconv-*"))
    assert not list((tmp_path / "cache").rglob("case-*.json"))
    assert not (tmp_path / "out.npz").exists()


def test_verilator_keeps_public_only_what_the_testbench_reaches(tmp_path):
    # Without cocotb's --public-flat-rw Verilator may optimise the engine's signals away; the
    # testbench must still reach the harness's ports and memories (else the run fails).
    expected = run_model(CONFIG, frames(3))
    result = rtl.run(CONFIG, frames(3), simulator="verilator", build_root=tmp_path)
    for key in expected:
        np.testing.assert_array_equal(result[key], expected[key])
    root = tmp_path / os.environ.get("PYTEST_XDIST_WORKER", "")
    entry, = (p for p in root.glob("eventconv_engine_harness-verilator-*") if p.is_dir())
    assert (entry / "public.vlt").read_text() == verilator_public(harness_public())
    assert build_dir_for(root, "t", "v", "verilator") != build_dir_for(
        root, "t", "v", "verilator", harness_public())
