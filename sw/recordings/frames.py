"""A recording as count frames (``SPEC.md``, "Event-camera input").

- Window k holds the events with ``t0 + k W <= t < t0 + (k + 1) W``, t0 the first event's
  time, W ``events.window_us``; the windows run from 0 to the one of the last event, empty
  windows included.
- Event ``(x, y)`` lands on pixel ``(y // D, x // D)``, D ``events.downsample``; one that lands
  outside the ``height`` x ``width`` frame is dropped and counted.
- Frame k is ``x_k[c, y, x] = min(255, S * n)``, S ``events.step``, n the number of window-k
  events on that pixel in channel c: with ``channels_in`` 2, c is the polarity (0 OFF, 1 ON);
  with 1, both polarities count together.

:func:`bin_events` gives the kept events with their window, channel and pixel (what an
address-event input takes); :func:`count_frames` gives the frames.
"""

from dataclasses import dataclass

import numpy as np

from eventconv.core.config import EVENT_CHANNELS, EventsConfig
from eventconv.core.ranges import ConfigError

from .read import RecordingError

__all__ = ["Binned", "bin_events", "count_frames", "MAX_FRAME_SAMPLES"]

#: At most this many samples (T x Cin x H x W bytes) of frames are made from one recording.
MAX_FRAME_SAMPLES = 1 << 31


@dataclass(frozen=True, eq=False)
class Binned:
    """The events of a recording that land inside the frame, in recording order.

    Attributes
    ----------
    window, channel, y, x : int64 arrays, one entry per kept event
    windows : int, T, the number of windows (frames)
    dropped : int, events that landed outside the frame
    """

    window: np.ndarray
    channel: np.ndarray
    y: np.ndarray
    x: np.ndarray
    windows: int
    dropped: int


def bin_events(recording, events, *, height, width, channels_in):
    """The window, channel and pixel of each event of ``recording`` that lands inside the
    ``height`` x ``width`` frame, by the rules of ``events`` (an
    :class:`~eventconv.core.config.EventsConfig`)."""
    if not isinstance(events, EventsConfig):
        raise ConfigError(f"events must be an eventconv.core.config.EventsConfig, "
                          f"not {events!r}")
    if channels_in not in EVENT_CHANNELS:
        raise ConfigError(f"channels_in must be 1 (both polarities together) or 2 (OFF, ON) "
                          f"for event-camera input, not {channels_in}")
    t = recording.t
    elapsed = t - t[0]
    span = int(elapsed[-1])
    # A window longer than the whole recording holds it all (and may not fit an int64).
    window = (np.zeros(len(t), np.int64) if events.window_us > span
              else elapsed // np.int64(events.window_us))
    windows = int(window[-1]) + 1
    samples = windows * channels_in * height * width
    if samples > MAX_FRAME_SAMPLES:
        raise RecordingError(
            f"events.window_us = {events.window_us} cuts this recording ({span} us) into "
            f"{windows} windows: {windows} x {channels_in} x {height} x {width} samples of "
            f"frames is more than 2^31; give a larger events.window_us")
    y = recording.y // events.downsample
    x = recording.x // events.downsample
    keep = (y >= 0) & (y < height) & (x >= 0) & (x < width)
    channel = (recording.p.astype(np.int64) if channels_in == 2
               else np.zeros(len(t), np.int64))
    return Binned(window=window[keep], channel=channel[keep], y=y[keep], x=x[keep],
                  windows=windows, dropped=int(len(t) - np.count_nonzero(keep)))


def count_frames(recording, events, *, height, width, channels_in):
    """The count frames of ``recording``: uint8 (T, channels_in, height, width), and the number
    of events dropped outside the frame."""
    binned = bin_events(recording, events, height=height, width=width,
                        channels_in=channels_in)
    shape = (binned.windows, channels_in, height, width)
    index = np.ravel_multi_index((binned.window, binned.channel, binned.y, binned.x), shape)
    samples, counts = np.unique(index, return_counts=True)
    frames = np.zeros(int(np.prod(shape)), np.uint8)
    frames[samples] = np.minimum(255, counts * events.step)
    return frames.reshape(shape), binned.dropped
