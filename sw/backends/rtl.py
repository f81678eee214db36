"""``eventconv run --backend rtl``: the exported engine Verilog simulated under cocotb.

Takes one layer or a network. The maps come from the simulated hardware: they start at the
last layer's map of the reset state (as the contract defines it) and integrate the output
events the engine gave. The counts, per layer, are the engine's own hardware counters.
"""

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from eventconv.backends.integrate import integrate
from eventconv.core.config import Config
from eventconv.core.network import Network
from eventconv.flow.verilog import engine_verilog
from eventconv.hw.target import GENERIC
from eventconv.sim.runner import check_simulator, run_cocotb

__all__ = ["run", "default_build_root"]


def default_build_root():
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(cache) / "eventconv" / "sim"


class _Progress:
    """A one-line progress bar on stderr, fed by the cocotb side through a file."""

    def __init__(self, path, total, enabled):
        self.path, self.total, self.enabled = path, total, enabled
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        if self.enabled:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.enabled:
            self.thread.join()
            print(file=sys.stderr)

    def _run(self):
        start = None  # the clock starts with the first frame, after the build
        while True:
            done = 0
            try:
                done = int(Path(self.path).read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
            if done and start is None:
                start, first = time.monotonic(), done
            rate = ""
            if start is not None and done > first:
                rate = f", {(done - first) / (time.monotonic() - start):.1f} frames/s"
            bar = "#" * (30 * done // self.total)
            print(f"\rrtl: [{bar:<30}] {done}/{self.total} frames{rate}   ",
                  end="", file=sys.stderr, flush=True)
            if self.stop.wait(0.5):
                break


def run(config, frames, *, simulator="icarus", progress=False, idle=0.0,
        stall=0.0, seed=0, build_root=None, target=GENERIC):
    """Simulate the engine of ``config`` (a Config or a Network) on ``frames`` (FRAMES.npy
    layout); returns OUT.npz's arrays (the one-layer form's or the network's).

    ``idle``/``stall`` add random input idle cycles and output backpressure (tests); the
    contract's ``cycles`` figure assumes neither, which is the default. ``target``: the engine
    as that family's boards build it (:mod:`eventconv.hw.target`).
    """
    network = Network.of(config) if isinstance(config, Config) else config
    network.check_frames(frames)
    check_simulator(simulator)
    verilog = engine_verilog(network, target=target)
    with tempfile.TemporaryDirectory(prefix="eventconv-") as tmp:
        frames_path = Path(tmp) / "frames.npy"
        np.save(frames_path, frames)
        progress_path = Path(tmp) / "progress"
        case = {"config": network.to_dict(), "frames": str(frames_path), "idle": idle,
                "stall": stall, "seed": seed, "progress": str(progress_path)}
        with _Progress(progress_path, len(frames), progress and sys.stderr.isatty()):
            result = run_cocotb(verilog_text=verilog, toplevel="eventconv_engine",
                                test_module="eventconv.sim.engine_tb", case=case,
                                simulator=simulator,
                                build_root=build_root or default_build_root())
    if result["extra"]:
        raise RuntimeError(f"engine gave {len(result['extra'])} beats after the last frame")
    frames_out = []
    for t, frame in enumerate(result["frames"]):
        if frame["frame_events_out"][-1] != len(frame["events"]):
            raise RuntimeError(f"frame {t}: engine counted {frame['frame_events_out'][-1]} "
                               f"output events but gave {len(frame['events'])}")
        frames_out.append({"events": frame["events"], "events_in": frame["frame_events_in"],
                           "events_out": frame["frame_events_out"],
                           "macs": frame["frame_macs"], "cycles": frame["frame_cycles"]})
    return integrate(network, frames_out)
