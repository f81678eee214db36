"""OUT.npz arrays from the output events hardware gave: maps start at the reset state's and
integrate the events; nothing comes from the model."""

import numpy as np

__all__ = ["reset_pooled_map", "integrate"]


def reset_pooled_map(config):
    """Pooled map of the reset state: for each o, min(255, max(0, bias[o]) >> shift)."""
    value = np.minimum(255, np.maximum(config.bias, 0) >> config.shift)
    return np.broadcast_to(value[:, None, None], (config.channels_out, config.height // 2,
                                                  config.width // 2)).astype(np.int64)



def integrate(config, frames):
    """OUT.npz arrays from what the hardware gave, frame by frame.

    ``frames``: dicts with ``events`` (output events ``(o, py, px, delta)``) and the frame's
    counts (``events_in``, ``events_out``, ``macs``, and ``cycles`` where there is one). The
    pooled maps start at the reset state's and integrate the events; nothing comes from the
    model. Raises ValueError if the events leave 0..255.
    """
    pooled = reset_pooled_map(config).copy()
    keys = [k for k in ("events_in", "events_out", "macs", "cycles") if k in frames[0]]
    out = {"pooled": [], **{k: [] for k in keys}}
    for t, frame in enumerate(frames):
        for o, py, px, delta in frame["events"]:
            pooled[o, py, px] += delta
        if pooled.min() < 0 or pooled.max() > 255:
            raise ValueError(f"frame {t}: output events integrate outside 0..255")
        out["pooled"].append(pooled.astype(np.uint8))
        for key in keys:
            out[key].append(frame[key])
    arrays = {k: np.array(v, dtype=np.int64) for k, v in out.items() if k != "pooled"}
    arrays["pooled"] = np.stack(out["pooled"])
    return arrays
