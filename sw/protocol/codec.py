"""Packets to and from bytes: the host side of the codec (the board's is gateware)."""

import json
import struct
import zlib
from dataclasses import dataclass

from eventconv.core.event_format import event_fields as event_word_fields
from eventconv.protocol.constants import (
    END,
    END_OF_FRAME_BYTES,
    INFO_BYTES,
    STATUS_BYTES,
    Command,
    Reply,
)
from eventconv.protocol.crc import crc16
from eventconv.protocol.slip import slip_escape

__all__ = ["LinkError", "BoardInfo", "encode_packet", "pixels_packet", "parse_reply",
           "config_digest", "event_fields", "event_byte_count"]


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


def encode_packet(kind, fields=b""):
    """A packet on the wire: END, SLIP-escaped (type, fields, CRC high, CRC low), END."""
    body = bytes((int(kind),)) + bytes(fields)
    body += crc16(body).to_bytes(2, "big")
    return bytes((END,)) + slip_escape(body) + bytes((END,))


def pixels_packet(frame, offset, samples):
    return encode_packet(Command.PIXELS, struct.pack("<H", frame & 0xFFFF)
                         + offset.to_bytes(3, "little") + struct.pack("<H", len(samples))
                         + bytes(samples))


def _output_event_fields(config):
    return event_word_fields(config.channels_out, config.height // 2, config.width // 2)


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


def parse_reply(body, event_fields=None):
    """A board packet body (CRC attached) as ``(Reply, value)``.

    Every type has one length (an EVENT's from ``event_fields``, :func:`event_fields`; any
    length without them), so a lost or added byte is refused by its length even where the
    CRC alone might miss it.

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
             Reply.INFO: INFO_BYTES, Reply.END_OF_FRAME: END_OF_FRAME_BYTES}
    if event_fields:
        bits = max(offset + width for _, offset, width, _ in event_fields)
        sizes[Reply.EVENT] = 1 + (bits + 7) // 8
    if kind in sizes and len(fields) + 1 != sizes[kind]:
        raise LinkError(f"{kind.name} packet of {len(fields) + 1} bytes, not {sizes[kind]}")
    if kind in (Reply.ACK, Reply.ERROR, Reply.SYNC):
        return kind, _status(fields)
    if kind == Reply.INFO:
        return kind, BoardInfo(*struct.unpack("<BIHHHHBBHBI", fields))
    if kind == Reply.END_OF_FRAME:
        frame, events_in, macs, events_out, cycles = struct.unpack("<HIIII", fields)
        return kind, {"frame": frame, "events_in": events_in, "macs": macs,
                      "events_out": events_out, "cycles": cycles}
    return kind, _event(fields, event_fields)


def config_digest(config):
    """CRC-32 of the fields built into the gateware that change results (geometry, weights,
    bias); the board reports it in INFO so the driver can refuse a different layer."""
    built_in = {"height": config.height, "width": config.width,
                "channels_in": config.channels_in, "channels_out": config.channels_out,
                "kernel_size": config.kernel_size, "weights": config.weights.tolist(),
                "bias": config.bias.tolist()}
    text = json.dumps(built_in, sort_keys=True, separators=(",", ":"))
    return zlib.crc32(text.encode())
