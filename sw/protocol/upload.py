"""Weights and bias uploaded at run time: what a board built for uploads holds in RAM, and the
bytes WEIGHTS packets write there (both sides use these; the protocol's "Weights and bias").

A board's layers keep their weights in RAM and their bias in registers; the host writes them
with WEIGHTS packets into numbered *memories*, layer by layer: layer i's ``lanes`` weight
memories (lane j holds output channels ``o = g * lanes + j``, word ``(g * Cin + c) * K * K +
ky * K + kx`` = ``w[o, c, ky, kx]``, int8 as a byte), then its bias memory (output channel o's
bias as 4 bytes little-endian, two's complement, at byte ``4 * o``).

So that one bitstream takes other trained weights of its shape, its accumulators are at least
:data:`UPLOAD_MIN_WIDTH` bits wide (:func:`upload_width`): weights and bias whose range needs
more are refused by the shape check (the board built for them takes them).
"""

import json
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from eventconv.core.config import checked_config
from eventconv.core.network import Network

__all__ = ["UPLOAD_MIN_WIDTH", "Memory", "upload_width", "lane_weights", "upload_memories",
           "upload_images", "shape_digest"]

#: The accumulator width of a layer built for uploads, at least: one ECP5 DP16KD word (18
#: bits). Any int8 weights with any bias would take 20 bits for a 3 x 3 kernel on one input
#: channel: two DP16KDs per bank, and the ULX3S then misses its clock (README).
UPLOAD_MIN_WIDTH = 18
BIAS_BYTES = 4


@dataclass(frozen=True)
class Memory:
    """One memory WEIGHTS writes: layer ``layer``'s lane ``lane`` weights (``lane`` None: its
    bias), ``size`` bytes."""
    layer: int
    lane: int | None
    size: int


def upload_width(config):
    """Accumulator width of a layer built for uploads: its own, and at least
    :data:`UPLOAD_MIN_WIDTH`."""
    return max(checked_config(config).accumulator_width, UPLOAD_MIN_WIDTH)


def lane_weights(config, lane):
    """Lane ``lane``'s weight memory contents (int list), as the accumulator unit reads it."""
    c = checked_config(config)
    return [int(v) for v in np.asarray(c.weights)[lane::c.lanes].reshape(-1)]


def _network(config):
    return config if isinstance(config, Network) else Network.of(checked_config(config))


def upload_memories(config):
    """The memories of a network (or one layer) built for uploads, in their numbering."""
    memories = []
    for index, c in enumerate(_network(config).layers):
        depth = (c.channels_out // c.lanes) * c.channels_in * c.kernel_size ** 2
        memories += [Memory(index, j, depth) for j in range(c.lanes)]
        memories.append(Memory(index, None, BIAS_BYTES * c.channels_out))
    return memories


def upload_images(config):
    """The bytes of every memory of :func:`upload_memories`, for ``config``'s weights and bias."""
    layers = _network(config).layers
    images = []
    for memory in upload_memories(config):
        c = layers[memory.layer]
        if memory.lane is None:
            images.append(b"".join(struct.pack("<i", int(b)) for b in c.bias))
        else:
            images.append(bytes(v & 0xFF for v in lane_weights(c, memory.lane)))
    return images


def _shape(c):
    return {"height": c.height, "width": c.width, "channels_in": c.channels_in,
            "channels_out": c.channels_out, "kernel_size": c.kernel_size, "pool": c.pool,
            "lanes": c.lanes, "accumulator_width": upload_width(c)}


def shape_digest(config):
    """CRC-32 of what a board built for uploads fixes: every layer's geometry, pool, lanes and
    accumulator width (not weights, bias or knobs). INFO reports it."""
    text = json.dumps([_shape(c) for c in _network(config).layers], sort_keys=True,
                      separators=(",", ":"))
    return zlib.crc32(text.encode())

