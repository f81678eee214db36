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
from eventconv.hw.layer.address_events import camera_event_layout
from eventconv.hw.target import GENERIC
from eventconv.sim.harness import harness_public, harness_verilog, power_of_two
from eventconv.sim.runner import KEEP_ENTRIES, check_simulator, run_cocotb, sigterm_unwinds

__all__ = ["run", "run_events", "default_build_root"]


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
    # SIGTERM unwinds too: the temporary folder goes, the simulator is stopped.
    with sigterm_unwinds(), tempfile.TemporaryDirectory(prefix="eventconv-") as tmp:
        frames_path = Path(tmp) / "frames.npy"
        np.save(frames_path, frames)
        return _simulate(network, {"frames": str(frames_path)}, len(frames), tmp,
                         testcase="run_frames", simulator=simulator, progress=progress,
                         idle=idle, stall=stall, seed=seed, build_root=build_root,
                         target=target)


def run_events(config, binned, *, simulator="icarus", progress=False, idle=0.0, stall=0.0,
               seed=0, build_root=None, target=GENERIC):
    """Simulate the engine built for address-event input on an event-camera recording's
    ``binned`` events (:func:`eventconv.recordings.bin_events`): each window's events, then
    its end of window. Returns OUT.npz's arrays; they equal those of the windows' count frames,
    and ``cycles`` grows with each window's events."""
    network = Network.of(config) if isinstance(config, Config) else config
    first = network.first
    layout = camera_event_layout(first.channels_in, first.height, first.width)
    offset = {name: layout[name].offset for name in ("channel", "y", "x", "end_of_window")}
    beats = ((binned.channel << offset["channel"]) | (binned.y << offset["y"])
             | (binned.x << offset["x"]))
    bounds = np.searchsorted(binned.window, np.arange(binned.windows + 1))
    end = 1 << offset["end_of_window"]
    windows = [[*map(int, beats[bounds[k]:bounds[k + 1]]), end] for k in range(binned.windows)]
    with sigterm_unwinds(), tempfile.TemporaryDirectory(prefix="eventconv-") as tmp:
        return _simulate(network, {"windows": windows}, binned.windows, tmp,
                         testcase="run_windows", simulator=simulator, progress=progress,
                         idle=idle, stall=stall, seed=seed, build_root=build_root,
                         target=target, address_events=True)


def _simulate(network, items, count, tmp, *, testcase, simulator, progress, idle, stall, seed,
              build_root, target, address_events=False):
    check_simulator(simulator)
    # A frame gives each output position at most once, then its end of frame.
    outputs = int(np.prod(network.output_shape)) + 1
    verilog = harness_verilog(network, target=target, address_events=address_events,
                              sink_depth=power_of_two(outputs))
    progress_path = Path(tmp) / "progress"
    case = {"config": network.to_dict(), **items, "idle": idle, "stall": stall, "seed": seed,
            "progress": str(progress_path)}
    with _Progress(progress_path, count, progress and sys.stderr.isatty()):
        result = run_cocotb(verilog_text=verilog, toplevel="eventconv_engine_harness",
                            test_module="eventconv.sim.engine_tb", case=case,
                            simulator=simulator, testcase=testcase,
                            public=harness_public(),
                            build_root=build_root or default_build_root(),
                            # The user's cache keeps its most recent entries only.
                            keep=None if build_root else KEEP_ENTRIES)
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
