"""``eventconv estimate``: what a network needs of a board and, given input, what it does there,
before any synthesis or simulation.

Resources come from the elaborated gateware (:mod:`eventconv.flow.resources`); the work from
the golden model on the input (per layer: input events, accumulate ops, touched pool windows,
output events); cycles from the cycle model below; energy from :mod:`eventconv.bench.energy`,
the same network run in dense mode beside it.

The cycle model, per layer and frame, follows the blocks' docstrings: the detector scans
``pixels_per_cycle`` samples a clock; each input event waits in the event queue for the
accumulators, which take ``taps in frame x Cout / lanes`` cycles for it, one after another (a
queue served in scan order, from the event's scan cycle on); the pool's end-of-frame work then
takes ``max(G, E)`` cycles (G reads: touched 2 x 2 windows x Cout / lanes, x 4 with ``pool`` 1;
E output events), plus :data:`FIXED` cycles of pipeline. Where the pool evaluates early
(the generic target: :func:`row_slacks`), G and E are those of the windows not yet final at
the frame's end (the rows from the last touched row minus the slack): the rest is read while
the frame runs. Accumulators in single-port RAM
(the iCE40's target) take two cycles per update beat and five per read. So a frame costs
``max(scan, accumulators done) + max(G, E) + FIXED``. Layers after the first take their events
as they come, all counted from the layer's start; the network's frame is the sum of its
layers', an upper bound (the gateware overlaps a layer with the one before).
Measured against the RTL (Verilator, real clip, 3 configurations): dense frames exact, event
frames 0-2.3 % under.
"""

from dataclasses import dataclass, replace

import numpy as np

from eventconv.bench.energy import OperationCounts, energy_per_frame, hit_windows
from eventconv.core.model import NetworkModel, taps_in_frame
from eventconv.flow.families import FAMILIES
from eventconv.flow.resources import check_fits, estimate_resources, totals
from eventconv.hw.layer.accumulator import AccumulatorUnit
from eventconv.hw.layer.accumulator_spram import SpramAccumulatorUnit
from eventconv.hw.layer.layer import input_slacks, pool_row_slack
from eventconv.hw.target import GENERIC

__all__ = ["LayerWork", "network_work", "frame_cycles", "estimate", "estimate_text", "FIXED",
           "accumulator_timing", "dense_network", "row_slacks"]

#: Pipeline cycles of a frame besides its work: a dense frame's cycles minus its work.
FIXED = 32


@dataclass
class LayerWork:
    """One layer's work per frame (int64 arrays (T,)) and the operation counts for energy."""
    counts: OperationCounts
    reads: np.ndarray        # G: the pool's end-of-frame reads
    accumulated: np.ndarray  # the cycle the accumulators finish the frame's events
    tail_events: np.ndarray  # output events of the windows read after the frame's end


def _after_frame(config, result, hit, row_slack):
    """``(windows, output events)`` the pool takes after the frame's end, of the windows
    ``hit`` (bool (H/2, W/2)): all of them, or with early evaluation (``row_slack`` not None)
    those not yet final then, from the row of the last touched window's minus the slack to
    the bottom."""
    if row_slack is None:
        return int(hit.sum()), int(result.events_out)
    rows = np.flatnonzero(hit.any(axis=1))
    final = rows[-1] - row_slack if len(rows) else 0
    out_rows = result.output_events.y // (2 // config.pool) if result.events_out else []
    return int(hit[max(final, 0):].sum()), int(np.count_nonzero(np.asarray(out_rows) >= final))


def row_slacks(network, target=GENERIC):
    """Each layer's pool ``row_slack`` as ``target`` builds the engine behind the delta
    detector (None: the pool reads after the frame's end only)."""
    return [pool_row_slack(config, slack) if target.pool_read_port else None
            for config, slack in zip(network.layers, input_slacks(network), strict=True)]


def _accumulated(config, events, first, beat_cycles):
    """The cycle the accumulators finish ``events``: a queue served in scan order, an event
    arriving at its scan cycle (layer 0) or at once (later layers: ``first`` False), each
    update beat taking ``beat_cycles``."""
    work = (taps_in_frame(config)[events.y, events.x] * (config.channels_out // config.lanes)
            * beat_cycles)
    if not first:
        return int(work.sum())
    sample = (events.y * config.width + events.x) * config.channels_in + events.channel
    arrival = sample // config.pixels_per_cycle
    done = 0
    for index in np.argsort(arrival, kind="stable"):
        done = max(done, int(arrival[index])) + int(work[index])
    return done


def network_work(network, frames, target=GENERIC):
    """Run ``frames`` through the golden model; a :class:`LayerWork` per layer, its
    accumulators' finishing cycle as ``target`` builds them (:func:`accumulator_timing`)."""
    beat_cycles, _ = accumulator_timing(target)
    frames = network.check_frames(frames)
    model = NetworkModel(network)
    slacks = row_slacks(network, target)
    rows = [[] for _ in network.layers]
    for frame in frames:
        for i, (config, result) in enumerate(zip(network.layers, model.step(frame),
                                                 strict=True)):
            events = result.input_events
            taps = int(taps_in_frame(config)[events.y, events.x].sum())
            hit = hit_windows(config, events)
            rows[i].append((frame.size if i == 0 else 0, result.events_in, result.macs, taps,
                            int(hit.sum()), result.events_out,
                            _accumulated(config, events, i == 0, beat_cycles),
                            *_after_frame(config, result, hit, slacks[i])))
    work = []
    for config, layer_rows in zip(network.layers, rows, strict=True):
        table = np.array(layer_rows, dtype=np.int64).reshape(-1, 9)
        counts = OperationCounts(*table[:, :6].T, channels_out=config.channels_out,
                                 accumulator_width=config.accumulator_width)
        groups = config.channels_out // config.lanes
        reads = table[:, 7] * groups * (4 if config.pool == 1 else 1)
        work.append(LayerWork(counts, reads, table[:, 6], table[:, 8]))
    return work


def accumulator_timing(target):
    """``(cycles per update beat, cycles per pool read)`` of the accumulators ``target``
    builds: 1 and 1 in block RAM, 2 and 5 in single-port RAM (the iCE40's SPRAM)."""
    if target.spram_accumulators:
        return SpramAccumulatorUnit.BEAT_CYCLES, SpramAccumulatorUnit.READ_CYCLES
    return AccumulatorUnit.BEAT_CYCLES, AccumulatorUnit.READ_CYCLES


def frame_cycles(network, work, target=GENERIC):
    """Estimated clock cycles per frame (float array (T,)) of ``network`` doing ``work``
    (from :func:`network_work` with the same ``target``)."""
    _, read_cycles = accumulator_timing(target)
    total = 0
    for config, layer in zip(network.layers, work, strict=True):
        scan = -(-layer.counts.samples // config.pixels_per_cycle)
        total = total + (np.maximum(scan, layer.accumulated)
                         + np.maximum(layer.reads * read_cycles, layer.tail_events)
                         + FIXED)
    return np.asarray(total, dtype=np.float64)


def dense_network(network):
    """``network`` with every layer in dense mode (the reference event mode is compared to)."""
    return replace(network, layers=tuple(layer.replace(mode="dense")
                                         for layer in network.layers))


def estimate(network, boards, frames=None):
    """A dict: per board the resources per stage and totals (``fits`` or the reason it does
    not), and with ``frames`` per layer the work, the cycles, frames per second at the board's
    clock and energy per frame, event mode against dense."""
    result = {"boards": {}}
    for board in boards:
        stages = estimate_resources(network, board)
        try:
            check_fits(network, board, stages)
            fits = None
        except ValueError as e:
            fits = str(e)
        result["boards"][board.name] = {"stages": stages, "total": totals(stages),
                                        "does_not_fit": fits, "board": board}
    if frames is not None:
        result["work"] = _work(network, frames, boards)
    return result


def _work(network, frames, boards=()):
    """Per mode the work, the cycles (generic gateware: the RTL backend's), energy, and per
    board the cycles as the board builds the layers."""
    modes = {}
    for name, net in (("event", network), ("dense", dense_network(network))):
        work = network_work(net, frames)
        energy = sum(energy_per_frame(layer.counts)["total"] for layer in work)
        on_board = {}
        for board in boards:
            same = accumulator_timing(board.target) == accumulator_timing(GENERIC)
            board_work = work if same else network_work(net, frames, board.target)
            on_board[board.name] = frame_cycles(net, board_work, board.target)
        modes[name] = {"work": work, "cycles": frame_cycles(net, work), "energy_pj": energy,
                       "board_cycles": on_board}
    return modes


def _resource_lines(name, entry):
    board = entry["board"]
    flow = FAMILIES[board.family]
    library = flow.memory
    capacity = board.capacity
    head = (f"| stage | memory kbit | {library.block} | "
            + (f"{library.single_port} | " if library.single_port else "")
            + (f"{library.distributed} | " if library.distributed else "")
            + f"bits in logic | {flow.dsp} | {flow.logic} (estimate) |")
    lines = [f"{name} ({board.pll_frequency / 1e6:g} MHz)", "", head,
             "|" + "---|" * (head.count("|") - 1)]
    for stage in [*entry["stages"], entry["total"]]:
        cells = [stage.stage, f"{stage.memory_bits / 1024:.1f}", str(stage.blocks)]
        if library.single_port:
            cells.append(str(stage.single_port))
        if library.distributed:
            cells.append(str(stage.distributed))
        cells += [str(stage.logic_bits), str(stage.dsp), str(stage.logic)]
        lines.append("| " + " | ".join(cells) + " |")
    total = entry["total"]
    have = [f"{library.block} {total.blocks}/{capacity[library.block]}",
            *([f"{library.single_port} {total.single_port}/{capacity[library.single_port]}"]
              if library.single_port else []),
            f"{flow.dsp} {total.dsp}/{capacity[flow.dsp]}",
            f"{flow.logic} ~{total.logic}/{capacity[flow.logic]}"]
    verdict = entry["does_not_fit"] or "fits: " + ", ".join(have)
    return lines + ["", verdict, ""]


def _work_lines(network, modes, boards):
    event, dense = modes["event"], modes["dense"]
    lines = ["| layer | events_in | macs (event / dense) | events_out |", "|---|---|---|---|"]
    for i, (e, d) in enumerate(zip(event["work"], dense["work"], strict=True)):
        lines.append(f"| {i} | {e.counts.events_in.mean():.1f} | {e.counts.macs.mean():.0f} / "
                     f"{d.counts.macs.mean():.0f} | {e.counts.events_out.mean():.1f} |")
    ce, cd = event["cycles"].mean(), dense["cycles"].mean()
    ee, ed = event["energy_pj"].mean(), dense["energy_pj"].mean()
    lines += ["", f"cycles per frame (estimate, mean, generic gateware as `run --backend rtl` "
              f"builds it): event {ce:.0f}, dense {cd:.0f} "
              f"({ce / cd:.1%})",
              f"energy per frame (Horowitz 45 nm, relative): event {ee / 1e3:.1f} nJ, dense "
              f"{ed / 1e3:.1f} nJ ({ee / ed:.1%})"]
    for board in boards:
        f = board.pll_frequency
        be = event["board_cycles"][board.name].mean()
        bd = dense["board_cycles"][board.name].mean()
        lines.append(f"frames per second at {board.name}'s {f / 1e6:g} MHz (as the board "
                     f"builds it: {be:.0f} / {bd:.0f} cycles): event {f / be:.0f}, "
                     f"dense {f / bd:.0f}")
    return lines


def estimate_text(network, result):
    """The estimate as Markdown-ish text for a terminal."""
    lines = []
    for name, entry in result["boards"].items():
        lines += _resource_lines(name, entry)
    if "work" in result:
        boards = [entry["board"] for entry in result["boards"].values()]
        lines += _work_lines(network, result["work"], boards)
    return "\n".join(lines) + "\n"
