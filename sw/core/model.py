"""Bit-exact golden model of one event-driven layer (SPEC.md). Pure numpy, no Amaranth.

Exposed frame by frame (:meth:`EventConvModel.step`, :func:`run_model`) and stage by stage,
because each RTL block is checked against the stage it implements:

* :func:`detect_events`      pixels -> input events, new reference      (DeltaDetector)
* :func:`fanout_updates`     one event -> its accumulator updates        (FanoutAddressGenerator)
* :func:`accumulate`         events -> accumulator state, macs           (accumulator unit)
* :func:`pool_stage`         accumulators, last pooled map -> output events (SparseMaxPool)

Events are :class:`Events`: parallel int64 arrays ``channel, y, x, delta``. Input events come
in raster order (y, then x, then channel); output events in (channel, py, px) order.
"""

from dataclasses import dataclass

import numpy as np

from eventconv.core.config import Config

__all__ = ["Events", "FrameResult", "EventConvModel", "detect_events", "fanout_updates",
           "accumulate", "correlate_same", "requantize", "max_pool", "pool_stage",
           "taps_in_frame", "run_model"]


@dataclass
class Events:
    channel: np.ndarray
    y: np.ndarray
    x: np.ndarray
    delta: np.ndarray

    def __len__(self):
        return len(self.delta)

    def tuples(self):
        return list(zip(self.channel.tolist(), self.y.tolist(), self.x.tolist(),
                        self.delta.tolist(), strict=True))

    @classmethod
    def from_tuples(cls, items):
        arr = np.array(list(items), dtype=np.int64).reshape(-1, 4)
        return cls(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])


def detect_events(frame, reference, threshold, mode="event"):
    """Delta detector (SPEC step 1) on one frame.

    ``frame``, ``reference``: uint8 (Cin, H, W). Returns ``(events, new_reference)``; events in
    raster order with the channels of a pixel adjacent, as the hardware scans them.
    """
    d = frame.astype(np.int64) - reference.astype(np.int64)
    fire = np.ones(d.shape, bool) if mode == "dense" else np.abs(d) > threshold
    new_reference = np.where(fire, frame, reference).astype(np.uint8)
    # (Cin, H, W) -> (H, W, Cin) so that nonzero() walks y, x, c: raster order.
    y, x, c = np.nonzero(fire.transpose(1, 2, 0))
    return Events(c, y, x, d[c, y, x]), new_reference


def taps_in_frame(config):
    """(H, W) map: how many kernel taps of an event at (y, x) land inside the frame."""
    h, w, k, p = config.height, config.width, config.kernel_size, config.pad

    def count(n):
        pos = np.arange(n)[:, None] - np.arange(k)[None, :] + p
        return ((pos >= 0) & (pos < n)).sum(axis=1)

    return np.outer(count(h), count(w))


def fanout_updates(config, channel, y, x):
    """The accumulate ops of one event, in the order the hardware issues them.

    List of ``(o, oy, ox, ky, kx)``: taps (ky, kx) in raster order, skipping those whose output
    position falls outside the frame, and for each tap every output channel o.
    """
    p = config.pad
    out = []
    for ky in range(config.kernel_size):
        oy = y - ky + p
        if not 0 <= oy < config.height:
            continue
        for kx in range(config.kernel_size):
            ox = x - kx + p
            if not 0 <= ox < config.width:
                continue
            out.extend((o, oy, ox, ky, kx) for o in range(config.channels_out))
    return out


def correlate_same(image, weights):
    """acc[o, y, x] = sum_{c,ky,kx} w[o,c,ky,kx] * image[c, y+ky-K//2, x+kx-K//2], zero padded."""
    cout, cin, k, _ = weights.shape
    _, h, w = image.shape
    p = k // 2
    padded = np.zeros((cin, h + 2 * p, w + 2 * p), np.int64)
    padded[:, p:p + h, p:p + w] = image
    out = np.zeros((cout, h, w), np.int64)
    for ky in range(k):
        for kx in range(k):
            window = padded[:, ky:ky + h, kx:kx + w].reshape(cin, -1)
            out += (weights[:, :, ky, kx] @ window).reshape(cout, h, w)
    return out


def accumulate(config, acc, events):
    """Fan-out and accumulate (SPEC step 2): add every event's updates to ``acc`` in place.

    Returns macs, the number of accumulate ops (in-frame taps times Cout). Events of one frame
    hit distinct pixels, so the sum of their updates is the correlation of their delta image.
    """
    delta_image = np.zeros((config.channels_in, config.height, config.width), np.int64)
    np.add.at(delta_image, (events.channel, events.y, events.x), events.delta)
    acc += correlate_same(delta_image, config.weights)
    return int(taps_in_frame(config)[events.y, events.x].sum()) * config.channels_out


def requantize(acc, shift):
    """SPEC step 3: ReLU, arithmetic right shift, clamp to uint8."""
    return np.minimum(255, np.maximum(acc, 0) >> shift).astype(np.uint8)


def max_pool(a):
    """SPEC step 4: 2 x 2 max pool, stride 2, over the last two axes."""
    c, h, w = a.shape
    return a.reshape(c, h // 2, 2, w // 2, 2).max(axis=(2, 4))


def pool_stage(acc, last_pooled, shift):
    """Requantize, pool, sparse output (SPEC steps 3-5).

    Returns ``(events, pooled)``: output events where the pooled map changed, in (o, py, px)
    order, with delta = new - old; and the new pooled map (uint8).
    """
    pooled = max_pool(requantize(acc, shift))
    diff = pooled.astype(np.int64) - last_pooled.astype(np.int64)
    o, py, px = np.nonzero(diff)
    return Events(o, py, px, diff[o, py, px]), pooled


@dataclass
class FrameResult:
    events_in: int
    macs: int
    events_out: int
    pooled: np.ndarray
    input_events: Events
    output_events: Events


class EventConvModel:
    """State of one layer (reference frame, accumulators, last pooled map) and its frame step."""

    def __init__(self, config: Config):
        self.config = config
        self.reset()

    def reset(self):
        c = self.config
        self.reference = np.zeros((c.channels_in, c.height, c.width), np.uint8)
        self.acc = np.broadcast_to(c.bias[:, None, None],
                                   (c.channels_out, c.height, c.width)).astype(np.int64)
        self.pooled = max_pool(requantize(self.acc, c.shift))

    def step(self, frame):
        """Process one frame, uint8 (Cin, H, W). Returns a :class:`FrameResult`."""
        c = self.config
        events, self.reference = detect_events(frame, self.reference, c.threshold, c.mode)
        macs = accumulate(c, self.acc, events)
        out, self.pooled = pool_stage(self.acc, self.pooled, c.shift)
        return FrameResult(len(events), macs, len(out), self.pooled, events, out)


def run_model(config, frames):
    """Run frames (as SPEC's FRAMES.npy) through a fresh model; returns OUT.npz's arrays."""
    frames = config.check_frames(frames)
    model = EventConvModel(config)
    pooled, counts = [], []
    for frame in frames:
        r = model.step(frame)
        pooled.append(r.pooled)
        counts.append((r.events_in, r.events_out, r.macs))
    counts = np.array(counts, dtype=np.int64).reshape(-1, 3)
    return {"pooled": np.stack(pooled).astype(np.uint8), "events_in": counts[:, 0],
            "events_out": counts[:, 1], "macs": counts[:, 2]}
