"""The delta detector on address events (SPEC "Event-camera input", step 1): the model stage
of :class:`eventconv.hw.layer.address_events.AddressEventDetector`. Pure numpy.

An event camera's recording, binned (``eventconv.recordings.bin_events``: each kept event's
window, channel and pixel), goes to the detector as the events themselves, window by window,
instead of as scanned count frames. The detector keeps, per sample, the window's value
``x = min(255, S * n)`` (n the window's events there) and the reference ``r``, and a list of the
pixels that need a look at the window's end: those touched in this window or the last. At the
end of a window it evaluates only those, ``d = x - r``, emitting ``(c, y, x, d)`` and setting
``r = x`` where ``|d| > T`` (every sample in dense mode): the same events, as a set, as
:func:`eventconv.core.model.detect_events` on the count frame (``count_frames``), in another
order. Why that is exact, with thresholds that change between windows, is argued in
:class:`~eventconv.hw.layer.address_events.AddressEventDetector`; this module does the same
steps, so that its order and its work (pixels looked at per window) are the hardware's:

- the list holds the pixels touched in the last window (in list order), then the pixels first
  touched in this window that are not on it, in order of their first event;
- a window whose threshold is below the bound (the last window's threshold, 0 after reset
  and after a dense window), and a dense window, look at every pixel instead, in raster order;
- a pixel's samples are looked at together, channel 0 first; after the window the list keeps,
  in the same order, the pixels with an event in this window.
"""

from dataclasses import dataclass

import numpy as np

from eventconv.core import ranges
from eventconv.core.config import EVENT_CHANNELS, MAX_STEP
from eventconv.core.model import Events

__all__ = ["WindowWork", "address_event_windows"]


@dataclass
class WindowWork:
    """One window of :func:`address_event_windows`.

    Attributes
    ----------
    events : :class:`~eventconv.core.model.Events`
        The detector's events, in the hardware's order.
    collected : int
        Binned events of the window (input beats before its end-of-window beat).
    evaluated : int
        Pixels looked at (each with all its channels) at the window's end.
    scanned : bool
        The window looked at every pixel in raster order (dense, or the threshold lowered).
    looked_at : int64 array
        The pixels looked at, ``y * width + x``, in order (``evaluated`` of them).
    """

    events: Events
    collected: int
    evaluated: int
    scanned: bool
    looked_at: np.ndarray


def _per_window(name, value, windows, lo, hi):
    """A knob as one integer per window: a scalar for all, or a sequence of ``windows``."""
    values = np.broadcast_to(np.asarray(value, dtype=object), (windows,)) \
        if np.ndim(value) == 0 else np.asarray(value, dtype=object)
    if values.shape != (windows,):
        raise ranges.ConfigError(f"{name} must be one integer or one per window ({windows}), "
                                 f"not {np.shape(value)}")
    return [ranges.integer(f"{name}[{k}]", v, lo, hi) for k, v in enumerate(values.tolist())]


def _dense_per_window(dense, windows):
    values = [dense] * windows if np.ndim(dense) == 0 else list(dense)
    if len(values) != windows:
        raise ranges.ConfigError(f"dense must be one bool or one per window ({windows}), "
                                 f"not {len(values)} values")
    for k, value in enumerate(values):
        if not isinstance(value, (bool, np.bool_)) and value not in (0, 1):
            raise ranges.ConfigTypeError(f"dense[{k}] must be a bool (True or False), "
                                         f"not {value!r}")
    return [bool(value) for value in values]


def _checked_column(name, values, count, lo, hi):
    array = np.asarray(values)
    if array.shape != (count,) or not (array.dtype.kind in "iu" or count == 0):
        raise ranges.ConfigError(f"{name} must be a one-dimensional integer array of {count} "
                                 f"entries (one per event), not {array.dtype} {array.shape}")
    array = array.astype(np.int64)
    bad = np.flatnonzero((array < lo) | (array > hi))
    if len(bad):
        raise ranges.ConfigError(f"{name}[{bad[0]}] must be in {lo}..{hi} (events outside the "
                                 f"frame are dropped by bin_events), not {array[bad[0]]}")
    return array


def address_event_windows(window, channel, y, x, *, windows, channels, height, width, step=1,
                          threshold=0, dense=False):
    """The events of each window of binned camera events, as the address-event detector gives
    them.

    Parameters
    ----------
    window, channel, y, x : int arrays, one entry per event, in recording order
        As :class:`eventconv.recordings.Binned`: window 0..windows-1 (non-decreasing), channel
        0..channels-1, the pixel inside the frame.
    windows : int
        T, the number of windows (empty ones included).
    channels : int
        Cin, 1 or 2.
    height, width : int
        The frame.
    step : int
        S, 1..255: a sample is ``min(255, S * n)``.
    threshold : int or sequence of int
        T per window (one for all, or one per window), 0..255.
    dense : bool or sequence of bool
        Dense mode per window.

    Returns
    -------
    list of :class:`WindowWork`, one per window.
    """
    windows = ranges.at_least("windows", windows, 1)
    channels = ranges.one_of("channels", channels, EVENT_CHANNELS)
    height = ranges.integer("height", height, 1, ranges.MAX_FRAME_SIDE)
    width = ranges.integer("width", width, 1, ranges.MAX_FRAME_SIDE)
    step = ranges.integer("step", step, 1, MAX_STEP)
    thresholds = _per_window("threshold", threshold, windows, 0, 255)
    denses = _dense_per_window(dense, windows)
    count = len(np.asarray(window))
    window = _checked_column("window", window, count, 0, windows - 1)
    if np.any(np.diff(window) < 0):
        raise ranges.ConfigError("window must be non-decreasing (events in recording order)")
    channel = _checked_column("channel", channel, count, 0, channels - 1)
    y = _checked_column("y", y, count, 0, height - 1)
    x = _checked_column("x", x, count, 0, width - 1)

    pixels = height * width
    reference = np.zeros((channels, pixels), np.int64)
    listed = np.zeros(0, np.int64)      # pixel indices y * W + x, in list order
    bound = 0
    starts = np.searchsorted(window, np.arange(windows + 1))
    out = []
    for k in range(windows):
        pick = slice(starts[k], starts[k + 1])
        pixel, lane = y[pick] * width + x[pick], channel[pick]
        counts = np.zeros((channels, pixels), np.int64)
        np.add.at(counts, (lane, pixel), 1)
        values = np.minimum(255, counts * step)
        scanned = denses[k] or thresholds[k] < bound
        if scanned:
            order = np.arange(pixels)
        else:
            touched, first = np.unique(pixel, return_index=True)
            new = touched[np.argsort(first, kind="stable")]
            order = np.concatenate([listed, new[~np.isin(new, listed)]])
        sample, old = values[:, order], reference[:, order]
        delta = sample - old
        fire = np.ones(delta.shape, bool) if denses[k] else np.abs(delta) > thresholds[k]
        reference[:, order] = np.where(fire, sample, old)
        # (pixel in order, channel): nonzero of the transpose walks the order, channel inner.
        where, lane_out = np.nonzero(fire.T)
        chosen = order[where]
        out.append(WindowWork(
            events=Events(lane_out.astype(np.int64), chosen // width, chosen % width,
                          delta[lane_out, where]),
            collected=int(starts[k + 1] - starts[k]), evaluated=len(order), scanned=scanned,
            looked_at=order))
        listed = order[sample.any(axis=0)]
        bound = 0 if denses[k] else thresholds[k]
    return out
