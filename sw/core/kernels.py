"""Ready-made layers for demos and benchmarks: a bank of classic 3 x 3 image filters.

The filters (Sobel, Scharr-like diagonals, Laplacian, Gaussian blur, box) are the kind the
first layer of a trained vision CNN converges to, scaled to int8 and with a bias that keeps
their responses in the uint8 output range after the shift.
"""

import numpy as np

from eventconv.core.config import Config

_FILTERS = {
    "sobel_x":    [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel_y":    [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "diag_45":    [[0, 1, 2], [-1, 0, 1], [-2, -1, 0]],
    "diag_135":   [[2, 1, 0], [1, 0, -1], [0, -1, -2]],
    "laplacian":  [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "gaussian":   [[1, 2, 1], [2, 4, 2], [1, 2, 1]],
    "box":        [[1, 1, 1], [1, 1, 1], [1, 1, 1]],
    "neg_sobel_x": [[1, 0, -1], [2, 0, -2], [1, 0, -1]],
}
FILTER_NAMES = tuple(_FILTERS)


def filter_bank_weights(channels_out=8, channels_in=1, scale=16):
    """int weights [Cout][Cin][3][3]: the filters above (cycled), times ``scale``, clipped."""
    names = [FILTER_NAMES[o % len(FILTER_NAMES)] for o in range(channels_out)]
    w = np.array([_FILTERS[n] for n in names], dtype=np.int64)[:, None] * scale
    w = np.repeat(w, channels_in, axis=1)
    return np.clip(w, -128, 127)


def filter_bank_config(height, width, *, channels_in=1, channels_out=8, threshold=8,
                       shift=6, mode="event", **knobs):
    """A K=3 layer using :func:`filter_bank_weights`; smoothing filters get a negative bias
    so that flat regions do not saturate."""
    w = filter_bank_weights(channels_out, channels_in)
    positive = np.where(w > 0, w, 0).reshape(channels_out, -1).sum(axis=1)
    bias = -(positive * 128) // 2 * (w.reshape(channels_out, -1).sum(axis=1) > 0)
    return Config.from_dict({
        "height": height, "width": width, "channels_in": channels_in,
        "channels_out": channels_out, "kernel_size": 3, "weights": w.tolist(),
        "bias": bias.tolist(), "threshold": threshold, "shift": shift, "mode": mode, **knobs})
