"""Packets to and from bytes: the host side of the codec (the board's is gateware)."""

import json
import struct
import zlib
from dataclasses import dataclass

from eventconv.core.config import checked_config
from eventconv.core.event_format import event_fields as event_word_fields
from eventconv.core.network import Network
from eventconv.protocol.constants import (
    END,
    INFO_BYTES,
    STATUS_BYTES,
    Command,
    Reply,
    end_of_frame_bytes,
)
from eventconv.protocol.crc import crc16
from eventconv.protocol.slip import slip_escape

__all__ = ["LinkError", "BoardInfo", "encode_packet", "pixels_packet", "weights_fields",
           "config_fields",
           "parse_reply", "config_digest", "event_fields", "event_byte_count", "as_network"]


class LinkError(RuntimeError):
    """The board cannot be reached, answers wrongly, or does not recover."""


@dataclass(frozen=True)
class BoardInfo:
    version: int
    digest: int
    height: int
    width: int
    channels_in: int
    channels_out: int
    kernel_size: int
    pixels_per_cycle: int
    chunk: int
    window: int
    clock_frequency: int
    layers: int
    shape: int


def as_network(config):
    """``config`` as a Network (a Config is a network of one layer); else a TypeError naming
    the parameter."""
    if isinstance(config, Network):
        return config
    return Network.of(checked_config(config))


def encode_packet(kind, fields=b""):
    """A packet on the wire: END, SLIP-escaped (type, fields, CRC high, CRC low), END."""
    body = bytes((int(kind),)) + bytes(fields)
    body += crc16(body).to_bytes(2, "big")
    return bytes((END,)) + slip_escape(body) + bytes((END,))


def pixels_packet(frame, offset, samples):
    return encode_packet(Command.PIXELS, struct.pack("<H", frame & 0xFFFF)
                         + offset.to_bytes(3, "little") + struct.pack("<H", len(samples))
                         + bytes(samples))


def weights_fields(memory, offset, data):
    """WEIGHTS's fields: ``data`` into memory ``memory`` (:mod:`.upload`) from byte
    ``offset``."""
    return (struct.pack("<H", memory) + offset.to_bytes(3, "little")
            + struct.pack("<H", len(data)) + bytes(data))


def config_fields(network, *, threshold=None, dense=None, shifts=None,
                  output_thresholds=None):
    """CONFIG's fields for ``network``'s knobs, or the values given instead."""
    layers = as_network(network).layers
    threshold = layers[0].threshold if threshold is None else threshold
    dense = layers[0].mode == "dense" if dense is None else dense
    shifts = [c.shift for c in layers] if shifts is None else shifts
    output_thresholds = ([c.output_threshold for c in layers] if output_thresholds is None
                         else output_thresholds)
    per_layer = [v for pair in zip(shifts, output_thresholds, strict=True) for v in pair]
    return bytes((threshold, int(dense), *per_layer))


def _output_event_fields(config):
    return event_word_fields(*as_network(config).output_shape)


def event_byte_count(config):
    """Bytes of an EVENT packet's event: the engine's event fields below end_of_frame."""
    bits = sum(width for name, width, _ in _output_event_fields(config)
               if name != "end_of_frame")
    return (bits + 7) // 8


def event_fields(config):
    """(name, offset, width, signed) of the EVENT packet's fields, from the engine's layout."""
    out, offset = [], 0
    for name, width, signed in _output_event_fields(config):
        if name != "end_of_frame":
            out.append((name, offset, width, signed))
        offset += width
    return out


def _status(fields):
    return {"byte": fields[0], "frame": fields[1] | fields[2] << 8,
            "offset": int.from_bytes(fields[3:6], "little")}


def _event(fields, event_fields):
    word = int.from_bytes(fields, "little")
    value = {}
    for name, offset, width, signed in event_fields or ():
        v = (word >> offset) & ((1 << width) - 1)
        if signed and v >> (width - 1):
            v -= 1 << width
        value[name] = v
    return value


def parse_reply(body, event_fields=None, layers=1):
    """A board packet body (CRC attached) as ``(Reply, value)``.

    Every type has one length (an EVENT's from ``event_fields``, :func:`event_fields`; any
    length without them; an END_OF_FRAME's from the network's ``layers``), so a lost or added
    byte is refused by its length even where the CRC alone might miss it. END_OF_FRAME's
    ``events_in``, ``macs`` and ``events_out`` are tuples, an element per layer.

    Raises
    ------
    LinkError
        The CRC does not match, or the type or length is not one of the protocol's.
    """
    if len(body) < 3 or crc16(body) != 0:
        raise LinkError(f"damaged packet from the board: {body.hex()}")
    kind, fields = body[0], body[1:-2]
    try:
        kind = Reply(kind)
    except ValueError:
        raise LinkError(f"unknown packet type 0x{kind:02x} from the board") from None
    sizes = {Reply.ACK: STATUS_BYTES, Reply.ERROR: STATUS_BYTES, Reply.SYNC: STATUS_BYTES,
             Reply.INFO: INFO_BYTES, Reply.END_OF_FRAME: end_of_frame_bytes(layers)}
    if event_fields:
        bits = max(offset + width for _, offset, width, _ in event_fields)
        sizes[Reply.EVENT] = 1 + (bits + 7) // 8
    if kind in sizes and len(fields) + 1 != sizes[kind]:
        raise LinkError(f"{kind.name} packet of {len(fields) + 1} bytes, not {sizes[kind]}")
    if kind in (Reply.ACK, Reply.ERROR, Reply.SYNC):
        return kind, _status(fields)
    if kind == Reply.INFO:
        return kind, BoardInfo(*struct.unpack("<BIHHHHBBHBIBI", fields))
    if kind == Reply.END_OF_FRAME:
        return kind, _end_of_frame(fields, layers)
    return kind, _event(fields, event_fields)


def _end_of_frame(fields, layers):
    frame, *figures = struct.unpack(f"<H{3 * layers + 1}I", fields)
    return {"frame": frame, "events_in": tuple(figures[0:-1:3]),
            "macs": tuple(figures[1:-1:3]), "events_out": tuple(figures[2:-1:3]),
            "cycles": figures[-1]}


def config_digest(config):
    """CRC-32 of what the gateware builds in that changes results (every layer's geometry,
    pool, weights and bias); the board reports it in INFO so the driver can refuse a different
    network. ``config``: a Config or a Network."""
    built_in = [{"height": c.height, "width": c.width, "channels_in": c.channels_in,
                 "channels_out": c.channels_out, "kernel_size": c.kernel_size, "pool": c.pool,
                 "weights": c.weights.tolist(), "bias": c.bias.tolist()}
                for c in as_network(config).layers]
    text = json.dumps(built_in, sort_keys=True, separators=(",", ":"))
    return zlib.crc32(text.encode())
