"""``eventconv sweep SPEC.yaml``: a design-space sweep run as tasks on Dask.

A sweep takes a network, real frames and lists of knobs, and runs one task per point (every
combination of the knobs, per board, and per nextpnr seed when it synthesizes) on a
``dask.distributed`` cluster: a LocalCluster on this machine by default, or a running scheduler
(``--scheduler tcp://host:8786``) whose workers have eventconv installed. Each task gives the
point's work (accumulate ops against dense), cycles per frame and frames per second (the cycle
model of :mod:`eventconv.bench.estimate`), resources (:mod:`eventconv.flow.resources`), the
output error against dense mode, and with ``synth: true`` the real build (LUTs, Fmax, met).
The result is a table (CSV and Markdown) and a Pareto plot: the points no other point beats on
cycles, error and logic at once.

The spec (YAML)::

    config: net.json            # a layer or a network (paths relative to the spec)
    frames: frames.npy          # or  clip: vtest_64x48  (a bundled real clip)
    frame_count: 20             # the first frames only (default: all)
    boards: [icebreaker, ulx3s-85f]
    sweep:                      # any of these, each a list
      threshold: [0, 4, 8, 16]
      output_threshold: [0, 2, 4]     # every layer but the last
      lanes: [1, 2, 4, 8]             # per layer, the largest divisor of its channels_out
      pixels_per_cycle: [1, 2, 4]
    synth: false                # true: also build each point (minutes per point)
    seeds: [1]                  # nextpnr seeds per built point
"""

import csv
import io
import itertools
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from eventconv.bench.cluster import dask_client
from eventconv.bench.estimate import dense_network, frame_cycles, network_work
from eventconv.core import ranges
from eventconv.core.clip import load_clip
from eventconv.core.config import read_npy
from eventconv.core.model import run_model
from eventconv.core.network import Network
from eventconv.core.ranges import ConfigError
from eventconv.flow.families import FAMILIES
from eventconv.flow.resources import check_fits, estimate_resources, totals
from eventconv.flow.synth import SynthError, synth_board
from eventconv.hw.boards import BOARDS

__all__ = ["SweepSpec", "load_spec", "sweep_points", "run_point", "run_sweep", "pareto",
           "write_results", "KNOBS"]

#: The knobs a sweep may vary.
KNOBS = ("threshold", "output_threshold", "lanes", "pixels_per_cycle")
_SPEC_KEYS = {"config", "frames", "clip", "frame_count", "boards", "sweep", "synth", "seeds"}


@dataclass
class SweepSpec:
    network: Network
    frames: np.ndarray
    boards: list
    knobs: dict
    synth: bool = False
    seeds: list = field(default_factory=lambda: [1])


def _list(where, value, check):
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list, not {value!r}")
    return [check(f"{where}[{i}]", v) for i, v in enumerate(value)]


def load_spec(path):
    """Read and check ``SPEC.yaml``: ConfigError naming the key (``SPEC.yaml: key``)."""
    import yaml

    path = Path(path)
    try:
        obj = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the sweep spec: {str(e).splitlines()[0]}") \
            from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: the sweep spec must be a YAML mapping")
    unknown = sorted(set(obj) - _SPEC_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} "
                          f"(keys: {', '.join(sorted(_SPEC_KEYS))})")
    if "config" not in obj or ("frames" in obj) == ("clip" in obj):
        raise ConfigError(f"{path}: needs 'config' and one of 'frames' or 'clip'")
    network = Network.from_json(path.parent / str(obj["config"]))
    frames = (read_npy(path.parent / str(obj["frames"]), "frames") if "frames" in obj
              else load_clip(str(obj["clip"])))
    if "frame_count" in obj:
        frames = frames[:ranges.integer("frame_count", obj["frame_count"], 2, len(frames))]
    network.check_frames(frames)
    boards = _list("boards", obj.get("boards", list(BOARDS)), _board)
    knobs = obj.get("sweep", {})
    if not isinstance(knobs, dict) or set(knobs) - set(KNOBS):
        raise ConfigError(f"sweep must map knobs ({', '.join(KNOBS)}) to lists, not {knobs!r}")
    knobs = {name: _list(f"sweep.{name}", values, _knob_check(name, network))
             for name, values in knobs.items()}
    synth = obj.get("synth", False)
    if not isinstance(synth, bool):
        raise ConfigError(f"synth must be true or false, not {synth!r}")
    seeds = _list("seeds", obj.get("seeds", [1]), lambda w, v: ranges.integer(w, v, 1, 5))
    return SweepSpec(network, frames, boards, knobs, synth, seeds)


def _board(where, name):
    if name not in BOARDS:
        raise ConfigError(f"{where} must be one of {', '.join(BOARDS)}, not {name!r}")
    return name


_LIMITS = {"threshold": (0, 255), "output_threshold": (0, 255), "lanes": (1, 1024),
           "pixels_per_cycle": (1, 8)}


def _knob_check(name, network):
    def check(where, value):
        value = ranges.integer(where, value, *_LIMITS[name])
        try:
            configure(network, {name: value})   # the layer's own checks (divisors, ...)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        return value
    return check


def _largest_divisor(n, at_most):
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def configure(network, point):
    """``network`` with a sweep point's knobs applied (ConfigError if the layer refuses)."""
    layers = []
    last = len(network.layers) - 1
    for i, layer in enumerate(network.layers):
        changes = {}
        if i == 0:
            for name in ("threshold", "pixels_per_cycle"):
                if name in point:
                    changes[name] = point[name]
        if "output_threshold" in point and i < last:
            changes["output_threshold"] = point["output_threshold"]
        if "lanes" in point:
            changes["lanes"] = _largest_divisor(layer.channels_out, point["lanes"])
        layers.append(layer.replace(**changes) if changes else layer)
    return replace(network, layers=tuple(layers))


def sweep_points(spec):
    """Every point of ``spec``: a dict of knob values, ``board`` and (synth) ``seed``."""
    names = list(spec.knobs)
    points = []
    for values in itertools.product(*(spec.knobs[n] for n in names)):
        for board in spec.boards:
            for seed in (spec.seeds if spec.synth else [None]):
                point = dict(zip(names, values, strict=True), board=board)
                if seed is not None:
                    point["seed"] = seed
                points.append(point)
    return points


def _output(result):
    return result["output"] if "output" in result else result["pooled"]


def run_point(network, frames, dense_output, point, synth=False, build_root=None):
    """One task: the row of ``point`` (a dict, printable as a table row)."""
    net = configure(network, point)
    board = BOARDS[point["board"]]
    work = network_work(net, frames)
    dense_work = network_work(dense_network(net), frames)
    cycles = frame_cycles(net, work)[1:].mean()
    macs = sum(layer.counts.macs[1:].sum() for layer in work)
    dense_macs = sum(layer.counts.macs[1:].sum() for layer in dense_work)
    output = _output(run_model(net, frames)).astype(np.int64)
    stages = estimate_resources(net, board)
    total = totals(stages)
    try:
        check_fits(net, board, stages)
        fits = True
    except ValueError:
        fits = False
    row = {**point, "work_pct": round(100 * macs / dense_macs, 3),
           "cycles": round(float(cycles), 1),
           "fps": round(board.clock_frequency / float(cycles), 1),
           "error": round(float(np.abs(output[1:] - dense_output[1:]).mean()), 4),
           "blocks": total.blocks, "dsp": total.dsp, "logic": total.logic, "fits": fits}
    if synth and fits:
        row.update(_synth_row(net, point, build_root))
    return row


def _synth_row(net, point, build_root):
    """The point built for real, with its one seed: Fmax, met, the logic synthesis used."""
    with tempfile.TemporaryDirectory(dir=build_root) as folder:
        try:
            report = synth_board(point["board"], net, build_root=folder,
                                 seeds=(point["seed"],))
        except SynthError as e:
            return {"fmax": None, "met": False, "synth": str(e).splitlines()[0]}
    logic = FAMILIES[BOARDS[point["board"]].family].logic
    used = {r["bel"]: r["used"] for r in report["resources"].values()}
    return {"fmax": report["clock"]["max_mhz"], "met": report["clock"]["met"],
            "logic_used": used[logic]}


def run_sweep(spec, scheduler=None, workers=2, progress=None):
    """Run every point of ``spec`` as a task on Dask; the rows in point order.

    ``scheduler``: the address of a running ``dask.distributed`` scheduler; None starts a
    LocalCluster of ``workers`` single-threaded processes here (the tasks hold the GIL).
    """
    from dask.distributed import as_completed

    dense_output = _output(run_model(dense_network(spec.network), spec.frames)).astype(np.int64)
    points = sweep_points(spec)
    with dask_client(scheduler, workers) as client:
        shared = client.scatter([spec.network, spec.frames, dense_output], broadcast=True)
        futures = [client.submit(run_point, *shared, point, spec.synth, pure=False)
                   for point in points]
        for done, _ in enumerate(as_completed(futures), 1):
            if progress is not None:
                progress(done, len(futures))
        return client.gather(futures)


def pareto(rows, objectives=("cycles", "error", "logic")):
    """A bool per row: no other row is at least as good on every objective (lower is better)
    and better on one."""
    values = np.array([[row[o] for o in objectives] for row in rows], dtype=np.float64)
    front = []
    for v in values:
        dominated = np.any(np.all(values <= v, axis=1) & np.any(values < v, axis=1))
        front.append(not dominated)
    return front


def _table_text(rows, front):
    columns = list(dict.fromkeys(key for row in rows for key in row)) + ["pareto"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns)
    writer.writeheader()
    for row, best in zip(rows, front, strict=True):
        writer.writerow({**row, "pareto": best})
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row, best in zip(rows, front, strict=True):
        lines.append("| " + " | ".join(str({**row, "pareto": best}.get(c, ""))
                                       for c in columns) + " |")
    return buffer.getvalue(), "\n".join(lines) + "\n"


def write_results(rows, paths):
    """Write the table (``.csv``, ``.md``) and the Pareto plot (``.png``) to ``paths``."""
    from eventconv.bench.plots import plot_pareto

    front = pareto(rows)
    csv_text, markdown = _table_text(rows, front)
    paths[0].write_text(csv_text)
    paths[1].write_text(markdown)
    plot_pareto(rows, front, paths[2])
