"""OUT.npz arrays from the output events hardware gave: the map starts at the reset state's
and integrates the events; no frame's result comes from the model."""

import numpy as np

from eventconv.core.model import NetworkModel, out_arrays

__all__ = ["reset_output_map", "integrate"]


def reset_output_map(network):
    """The last layer's map R of the reset state (SPEC: the state an all-zero input gives):
    for one layer ``min(255, max(0, bias[o]) >> shift)`` pooled; for a network, from the reset
    maps of the layers before."""
    return NetworkModel(network).layers[-1].pooled.astype(np.int64)


def integrate(network, frames):
    """OUT.npz arrays from what the hardware gave, frame by frame.

    ``frames``: dicts with ``events`` (output events ``(o, y, x, delta)`` of the last layer)
    and the frame's per-layer counts ``events_in``, ``events_out``, ``macs`` (lists of L), and
    ``cycles`` where there is one. The map starts at the reset state's and integrates the
    events. Raises ValueError if the events leave 0..255.
    """
    emitted = reset_output_map(network).copy()
    maps = []
    for t, frame in enumerate(frames):
        for o, y, x, delta in frame["events"]:
            emitted[o, y, x] += delta
        if emitted.min() < 0 or emitted.max() > 255:
            raise ValueError(f"frame {t}: output events integrate outside 0..255")
        maps.append(emitted.astype(np.uint8))
    counts = np.array([[frame[k] for k in ("events_in", "events_out", "macs")]
                       for frame in frames], dtype=np.int64).transpose(0, 2, 1)
    arrays = out_arrays(network, np.stack(maps), counts)
    if "cycles" in frames[0]:
        arrays["cycles"] = np.array([frame["cycles"] for frame in frames], dtype=np.int64)
    return arrays
