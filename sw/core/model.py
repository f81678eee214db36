"""Bit-exact golden model of event-driven layers and networks (``SPEC.md`` beside this file).
Pure numpy, no Amaranth.

Exposed network by network (:class:`NetworkModel`, :func:`run_model`), layer by layer
(:class:`EventConvModel`) and stage by stage, because each RTL block is checked against the
stage it implements:

* :func:`detect_events`      pixels -> input events, new reference      (DeltaDetector)
* :func:`fanout_updates`     one event -> its accumulator updates        (FanoutAddressGenerator)
* :func:`accumulate`         events -> accumulator state, macs           (accumulator unit)
* :func:`pool_stage`         accumulators, emitted map -> output events    (SparseMaxPool)

Events are :class:`Events`: parallel int64 arrays ``channel, y, x, delta``. Input events come
in raster order (y, then x, then channel); output events in (channel, py, px) order.
"""

from dataclasses import dataclass

import numpy as np

from eventconv.core.config import Config
from eventconv.core.network import Network

__all__ = ["Events", "FrameResult", "EventConvModel", "NetworkModel", "detect_events",
           "fanout_updates", "accumulate", "correlate_same", "requantize", "max_pool",
           "pool_stage", "reset_map", "taps_in_frame", "run_model"]


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


def max_pool(a, pool=2):
    """SPEC step 4: ``pool`` x ``pool`` max pool, stride ``pool``, over the last two axes."""
    if pool == 1:
        return a
    c, h, w = a.shape
    return a.reshape(c, h // 2, 2, w // 2, 2).max(axis=(2, 4))


def pool_stage(acc, emitted, shift, *, pool=2, output_threshold=0, dense=False):
    """Requantize, pool, sparse output (SPEC steps 3-5).

    ``emitted`` is R, the map the layer has emitted. Returns ``(events, emitted)``: the output
    events ``(o, y, x, P - R)`` where ``|P - R| > output_threshold`` (every position in dense
    mode), in (o, y, x) order, and the new R (uint8).
    """
    pooled = max_pool(requantize(acc, shift), pool)
    diff = pooled.astype(np.int64) - emitted.astype(np.int64)
    fire = np.ones(diff.shape, bool) if dense else np.abs(diff) > output_threshold
    o, y, x = np.nonzero(fire)
    return Events(o, y, x, diff[o, y, x]), np.where(fire, pooled, emitted).astype(np.uint8)


def reset_map(config, input_map=None):
    """``(acc, R)`` of a layer's reset state: the state an all-zero input gives.

    ``input_map``: R of the layer before at its reset (None for the first layer, whose
    accumulators then hold the bias). Later layers hold ``correlate_same(input_map, w) + bias``.
    """
    c = config
    acc = np.broadcast_to(c.bias[:, None, None],
                          (c.channels_out, c.height, c.width)).astype(np.int64)
    if input_map is not None:
        acc = acc + correlate_same(input_map.astype(np.int64), c.weights)
    return acc, max_pool(requantize(acc, c.shift), c.pool)


@dataclass
class FrameResult:
    events_in: int
    macs: int
    events_out: int
    pooled: np.ndarray        # R, the map the layer emitted (pooled by its ``pool``)
    input_events: Events
    output_events: Events


class EventConvModel:
    """State of one layer (reference frame, accumulators, emitted map R) and its frame step.

    ``input_map``: for a layer fed by another layer's events, the reset map of that layer
    (SPEC, "A network"); the layer then has no detector and steps on events
    (:meth:`step_events`).
    """

    def __init__(self, config: Config, input_map=None):
        self.config = config
        self.input_map = input_map
        self.reset()

    def reset(self):
        c = self.config
        self.reference = np.zeros((c.channels_in, c.height, c.width), np.uint8)
        self.acc, self.pooled = reset_map(c, self.input_map)

    def step(self, frame):
        """Process one frame, uint8 (Cin, H, W). Returns a :class:`FrameResult`."""
        c = self.config
        events, self.reference = detect_events(frame, self.reference, c.threshold, c.mode)
        return self.step_events(events)

    def step_events(self, events):
        """Accumulate a frame's input events, then requantize, pool and emit."""
        c = self.config
        macs = accumulate(c, self.acc, events)
        out, self.pooled = pool_stage(self.acc, self.pooled, c.shift, pool=c.pool,
                                      output_threshold=c.output_threshold,
                                      dense=c.mode == "dense")
        return FrameResult(len(events), macs, len(out), self.pooled, events, out)


class NetworkModel:
    """A network's layers, each fed by the output events of the one before."""

    def __init__(self, network: Network):
        self.network = network
        self.layers = []
        input_map = None
        for config in network.layers:
            layer = EventConvModel(config, input_map)
            self.layers.append(layer)
            input_map = layer.pooled

    def step(self, frame):
        """One frame through every layer; returns the list of their :class:`FrameResult`."""
        results = [self.layers[0].step(frame)]
        for layer in self.layers[1:]:
            results.append(layer.step_events(results[-1].output_events))
        return results


def run_model(config, frames):
    """Run frames (FRAMES.npy layout) through a fresh model; returns OUT.npz's arrays.

    ``config``: a :class:`~eventconv.core.config.Config` or a one-layer
    :class:`~eventconv.core.network.Network` gives the one-layer arrays (``pooled``, counts of
    shape (T,)); a network of several layers gives ``output`` and counts of shape (T, L).
    """
    network = Network.of(config) if isinstance(config, Config) else config
    frames = network.check_frames(frames)
    model = NetworkModel(network)
    maps, counts = [], []
    for frame in frames:
        results = model.step(frame)
        maps.append(results[-1].pooled)
        counts.append([(r.events_in, r.events_out, r.macs) for r in results])
    counts = np.array(counts, dtype=np.int64).reshape(len(frames), len(network.layers), 3)
    return out_arrays(network, np.stack(maps).astype(np.uint8), counts)


def out_arrays(network, maps, counts):
    """OUT.npz's arrays from the maps after each frame and counts (T, L, 3) of events_in,
    events_out, macs: the one-layer form's names and shapes, or the network's."""
    names = ("events_in", "events_out", "macs")
    if network.single:
        return {"pooled": maps, **{name: counts[:, 0, k] for k, name in enumerate(names)}}
    return {"output": maps, **{name: counts[:, :, k] for k, name in enumerate(names)}}
