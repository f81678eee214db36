"""The pool's two ways side by side on the real clip, with the contract's defaults (1 lane,
1 pixel per clock): the generic build, whose pool reads the windows no later event can touch
while the frame runs (its own read port), against the same engine with the pool reading
every window after the frame's end (the board builds' way). Event and dense mode; cycles
against accumulate ops, the figure an outside check of event / dense cycles against event /
dense work sees."""

from dataclasses import replace

from eventconv.bench.boards import BOARD_CLIP
from eventconv.bench.runs import run_layer
from eventconv.core.clip import load_clip
from eventconv.core.kernels import filter_bank_config
from eventconv.hw.target import GENERIC

__all__ = ["POOL_MODES", "measure_pool_modes"]

#: The generic build, and the same without the pool's own port (it reads after the frame).
POOL_MODES = {"during the frame": GENERIC,
              "after the frame": replace(GENERIC, name="generic-end-of-frame",
                                         pool_read_port=False)}


def _ratio(out):
    """Cycles per accumulate op over the steady frames (frame 0 is a dense frame)."""
    return float(out["cycles"][1:].sum() / out["macs"][1:].sum())


def measure_pool_modes(settings):
    """Per pool mode (RTL backend only, else ``[]``): the default layer at the clip's size,
    event mode on ``settings.frames`` frames and dense mode on ``settings.sweep_dense_frames``
    + 1, each checked against the model."""
    if settings.backend != "rtl":
        return []
    frames = load_clip(BOARD_CLIP)[:max(2, settings.frames)]
    _, height, width = frames.shape
    config = filter_bank_config(height, width)
    rows = []
    for name, target in POOL_MODES.items():
        event = run_layer(settings, config, frames, target=target)
        dense = run_layer(settings, config.replace(mode="dense"),
                          frames[:settings.sweep_dense_frames + 1], target=target)
        event_ratio, dense_ratio = _ratio(event), _ratio(dense)
        rows.append({"mode": name, "config": config,
                     "event_cycles": float(event["cycles"][1:].mean()),
                     "dense_cycles": float(dense["cycles"][1:].mean()),
                     "event_per_op": event_ratio, "dense_per_op": dense_ratio,
                     "ratio": event_ratio / dense_ratio})
        settings.say(f"bench: pool {name}: event {len(frames)} frames, dense "
                     f"{settings.sweep_dense_frames + 1}")
    return rows
