"""A benchmark run of one layer: the golden model's, or the RTL's checked against it."""

import sys

import numpy as np

from eventconv.backends import rtl as rtl_backend
from eventconv.core.model import run_model
from eventconv.hw.target import GENERIC

__all__ = ["run_layer"]


def run_layer(settings, config, frames, *, simulator=None, target=GENERIC):
    """OUT.npz arrays of ``frames`` through the configured backend; RTL runs are checked
    against the golden model and raise ``RuntimeError`` on any difference. ``target``: the
    family the engine is built for (a board's own build)."""
    model = run_model(config, frames)
    if settings.backend == "model":
        return model
    rtl = rtl_backend.run(config, frames, simulator=simulator or settings.simulator,
                          build_root=settings.build_root, progress=sys.stderr.isatty(),
                          target=target)
    for key in ("pooled", "events_in", "events_out", "macs"):
        if not np.array_equal(rtl[key], model[key]):
            raise RuntimeError(f"RTL differs from the golden model in {key!r} for "
                               f"lanes={config.lanes}, pixels_per_cycle="
                               f"{config.pixels_per_cycle}, mode={config.mode}, "
                               f"threshold={config.threshold}, target={target.name}")
    return rtl
