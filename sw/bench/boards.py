"""The boards' own engines on the real clip: each board's default layer at the clip's size, built
for the board's family (the iCEBreaker's accumulators in SPRAM, the ULX3S's RAM output
registers), simulated, checked against the golden model; cycles against the work bound of
that build and frames per second at the board's clock."""

import numpy as np

from eventconv.bench.estimate import accumulator_timing
from eventconv.bench.runs import run_layer
from eventconv.core.clip import load_clip
from eventconv.hw.boards import BOARDS

__all__ = ["BOARD_CLIP", "measure_boards", "work_bound"]

#: The clip the boards run (the iCEBreaker's default frame size).
BOARD_CLIP = "vtest_64x48"


def work_bound(config, macs, target):
    """Cycles a frame needs at least on ``target``'s build: max(samples / pixels per clock,
    macs x cycles per update beat / lanes)."""
    beat_cycles, _ = accumulator_timing(target)
    samples = config.height * config.width * config.channels_in
    return np.maximum(samples / config.pixels_per_cycle,
                      np.asarray(macs) * beat_cycles / config.lanes)


def _figures(config, out, target, clock):
    macs, cycles = out["macs"][1:], out["cycles"][1:]   # steady frames: frame 0 is dense work
    bound = work_bound(config, macs, target)
    return {"cycles": float(cycles.mean()), "bound": float(bound.mean()),
            "ratio": float(np.median(cycles / bound)), "fps": clock / float(cycles.mean())}


def measure_boards(settings):
    """Per board (RTL backend only, else ``[]``): its default layer at the clip's size, event
    mode on ``settings.frames`` frames and dense mode on ``settings.sweep_dense_frames`` + 1."""
    if settings.backend != "rtl":
        return []
    frames = load_clip(BOARD_CLIP)[:max(2, settings.frames)]
    _, height, width = frames.shape
    rows = []
    for board in BOARDS.values():
        config = board.default_config().replace(height=height, width=width)
        clock = board.pll_frequency
        event = run_layer(settings, config, frames, target=board.target)
        dense_frames = frames[:settings.sweep_dense_frames + 1]
        dense = run_layer(settings, config.replace(mode="dense"), dense_frames,
                          target=board.target)
        rows.append({"board": board.name, "config": config, "clock": clock,
                     "event": _figures(config, event, board.target, clock),
                     "dense": _figures(config, dense, board.target, clock)})
        settings.say(f"bench: {board.name}'s build: event {len(frames)} frames, dense "
                     f"{len(dense_frames)}")
    return rows
