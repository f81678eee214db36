"""Host driver of the board: the link protocol over a byte transport (a serial port or the
co-simulation bridge), and ``eventconv run --backend board``.

The protocol is specified in :mod:`eventconv.hw.host_link` (its module docstring); the
constants here are the single source for both sides: the gateware imports them.

Layers, each usable without the one above it:

- packet codec: :func:`crc16`, :func:`encode_packet`, :class:`SlipDecoder`, :func:`parse_reply`;
- :class:`ByteTransport` (``write``, ``read`` with a timeout in the transport's own seconds)
  and :class:`SerialTransport` (pyserial);
- :class:`BoardLink`: INFO, CONFIG, SYNC, streaming frames with a window, collecting output
  events and end-of-frame figures, and recovering from any error by SYNC;
- :func:`run_board`: OUT.npz arrays of a whole clip, as the other backends give them.
"""

import json
import struct
import sys
import zlib
from collections import deque
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

__all__ = [
    "PROTOCOL_VERSION", "END", "ESC", "ESC_END", "ESC_ESC", "Command", "Reply", "ErrorCode",
    "ERROR_MEANINGS", "PIXELS_HEADER_BYTES", "DEFAULT_BAUD_RATE", "crc16", "encode_packet",
    "SlipDecoder", "parse_reply", "config_digest", "event_byte_count", "event_fields",
    "pixels_packet", "BoardInfo",
    "LinkError", "ByteTransport", "SerialTransport", "BoardLink", "run_board",
]

PROTOCOL_VERSION = 1
# SLIP (RFC 1055) framing bytes.
END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
CRC_INIT, CRC_POLY = 0xFFFF, 0x1021
DEFAULT_BAUD_RATE = 1_000_000


class Command(IntEnum):
    """Host to board packet types."""
    INFO = 0x01
    CONFIG = 0x02
    PIXELS = 0x03
    SYNC = 0x04


class Reply(IntEnum):
    """Board to host packet types."""
    ACK = 0x80
    EVENT = 0x81
    END_OF_FRAME = 0x82
    ERROR = 0x83
    SYNC = 0x84
    INFO = 0x85


class ErrorCode(IntEnum):
    CRC = 1
    COMMAND = 2
    LENGTH = 3
    POSITION = 4
    TIMEOUT = 5
    FRAMING = 6
    OVERRUN = 7
    BUSY = 8
    VALUE = 9


ERROR_MEANINGS = {
    ErrorCode.CRC: "checksum mismatch (bytes damaged, or a truncated packet ran into the next)",
    ErrorCode.COMMAND: "unknown packet type",
    ErrorCode.LENGTH: "packet length wrong for its type, or PIXELS count out of range",
    ErrorCode.POSITION: "PIXELS frame/offset is not the next expected position",
    ErrorCode.TIMEOUT: "packet not finished in time (truncated)",
    ErrorCode.FRAMING: "UART stop bit low or invalid SLIP escape",
    ErrorCode.OVERRUN: "bytes lost: the receive buffer overflowed",
    ErrorCode.BUSY: "PIXELS beyond the window: no free buffer slot",
    ErrorCode.VALUE: "CONFIG value out of range (shift 0..31, dense 0..1)",
}

# type u8, frame u16, offset u24, count u16.
PIXELS_HEADER_BYTES = 8
STATUS_BYTES = 7          # type, byte, frame u16, offset u24
INFO_BYTES = 23
END_OF_FRAME_BYTES = 19   # type, frame u16, events_in, macs, events_out, cycles (u32 each)


def crc16(data, crc=CRC_INIT):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, MSB first, no final xor).

    Appending the result high byte first makes the CRC of the whole 0: that is the check.
    """
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def slip_escape(body):
    out = bytearray()
    for byte in body:
        if byte == END:
            out += bytes((ESC, ESC_END))
        elif byte == ESC:
            out += bytes((ESC, ESC_ESC))
        else:
            out.append(byte)
    return bytes(out)


def encode_packet(kind, fields=b""):
    """A packet on the wire: END, SLIP-escaped (type, fields, CRC high, CRC low), END."""
    body = bytes((int(kind),)) + bytes(fields)
    body += crc16(body).to_bytes(2, "big")
    return bytes((END,)) + slip_escape(body) + bytes((END,))


def pixels_packet(frame, offset, samples):
    return encode_packet(Command.PIXELS, struct.pack("<H", frame & 0xFFFF)
                         + offset.to_bytes(3, "little") + struct.pack("<H", len(samples))
                         + bytes(samples))


class SlipDecoder:
    """Splits received bytes into packet bodies (escapes removed, CRC still attached)."""

    def __init__(self):
        self.body = bytearray()
        self.escape = False
        self.damaged = False

    def feed(self, data):
        """Bytes in, list of (body, damaged) out; empty packets are skipped."""
        out = []
        for byte in data:
            if byte == END:
                if self.body or self.damaged:
                    out.append((bytes(self.body), self.damaged))
                self.body, self.damaged, self.escape = bytearray(), False, False
            elif self.escape:
                self.escape = False
                if byte == ESC_END:
                    self.body.append(END)
                elif byte == ESC_ESC:
                    self.body.append(ESC)
                else:
                    self.damaged = True
            elif byte == ESC:
                self.escape = True
            else:
                self.body.append(byte)
        return out


def event_byte_count(config):
    """Bytes of an EVENT packet's event: the engine's event fields below end_of_frame."""
    from .hw.layouts import event_layout
    layout = event_layout(config.channels_out, config.height // 2, config.width // 2)
    return (layout["end_of_frame"].offset + 7) // 8


def event_fields(config):
    """(name, offset, width, signed) of the EVENT packet's fields, from the engine's layout."""
    from .hw.layouts import event_layout
    layout = event_layout(config.channels_out, config.height // 2, config.width // 2)
    return [(name, field.offset, field.width, getattr(field.shape, "signed", False))
            for name, field in layout if name != "end_of_frame"]


def parse_reply(body, event_fields=None):
    """A board packet body (CRC attached) as ``(Reply, dict)``.

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
    if kind in sizes and len(fields) + 1 != sizes[kind]:
        raise LinkError(f"{kind.name} packet of {len(fields) + 1} bytes, not {sizes[kind]}")
    if kind in (Reply.ACK, Reply.ERROR, Reply.SYNC):
        value = {"byte": fields[0], "frame": fields[1] | fields[2] << 8,
                 "offset": int.from_bytes(fields[3:6], "little")}
    elif kind == Reply.INFO:
        (version, digest, height, width, cin, cout, k, ppc, chunk, window,
         clock) = struct.unpack("<BIHHHHBBHBI", fields)
        value = BoardInfo(version, digest, height, width, cin, cout, k, ppc, chunk, window,
                          clock)
    elif kind == Reply.END_OF_FRAME:
        frame, events_in, macs, events_out, cycles = struct.unpack("<HIIII", fields)
        value = {"frame": frame, "events_in": events_in, "macs": macs,
                 "events_out": events_out, "cycles": cycles}
    else:
        word = int.from_bytes(fields, "little")
        value = {}
        for name, offset, width, signed in event_fields or ():
            v = (word >> offset) & ((1 << width) - 1)
            if signed and v >> (width - 1):
                v -= 1 << width
            value[name] = v
    return kind, value


def config_digest(config):
    """CRC-32 of the fields built into the gateware that change results (geometry, weights,
    bias); the board reports it in INFO so the driver can refuse a different layer."""
    built_in = {"height": config.height, "width": config.width,
                "channels_in": config.channels_in, "channels_out": config.channels_out,
                "kernel_size": config.kernel_size, "weights": config.weights.tolist(),
                "bias": config.bias.tolist()}
    text = json.dumps(built_in, sort_keys=True, separators=(",", ":"))
    return zlib.crc32(text.encode())


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


class LinkError(RuntimeError):
    """The board cannot be reached, answers wrongly, or does not recover."""


class ByteTransport:
    """Bytes to and from the board. ``read(timeout)`` returns what arrived, waiting up to
    ``timeout`` seconds (of the transport's clock: wall time for a serial port, simulated time
    for the co-simulation) for at least one byte; ``b""`` when nothing came."""

    def write(self, data):
        raise NotImplementedError

    def read(self, timeout):
        raise NotImplementedError

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialTransport(ByteTransport):
    """A serial port through pyserial (8N1, no flow control)."""

    def __init__(self, port, baud_rate=DEFAULT_BAUD_RATE):
        import serial
        try:
            # A device path, or any pyserial URL (socket://, rfc2217://).
            self.serial = serial.serial_for_url(port, baud_rate, timeout=0, write_timeout=10)
        except (serial.SerialException, ValueError) as e:
            raise LinkError(f"cannot open serial port {port}: {e}") from None
        self.serial.reset_input_buffer()

    def write(self, data):
        self.serial.write(data)

    def read(self, timeout):
        self.serial.timeout = timeout
        first = self.serial.read(1)
        if not first:
            return b""
        return first + self.serial.read(self.serial.in_waiting)

    def close(self):
        self.serial.close()


class BoardLink:
    """The protocol client: one board, one configuration.

    Parameters
    ----------
    transport : ByteTransport
    config : :class:`eventconv.config.Config`
        Must be the layer the board was built for (checked against INFO's digest).
    timeout : float
        Seconds (transport clock) without any byte from the board, while one is expected,
        before the link is resynchronised.
    retries : int
        Resends of a command, and resynchronisations without progress, before giving up with
        :class:`LinkError`.

    Attributes
    ----------
    errors : list of (ErrorCode, frame, offset)
        Every ERROR the board answered (the link recovered from each unless an exception
        said otherwise).
    """

    def __init__(self, transport, config, *, timeout=1.0, retries=5):
        self.transport, self.config = transport, config
        self.timeout, self.retries = timeout, retries
        self.decoder = SlipDecoder()
        self.event_fields = event_fields(config)
        self.errors = []
        self.info = None
        self._token = 0
        self._pending = deque()   # packets read but not yet consumed
        self._collect = False     # output is collected only after this run's CONFIG
        self._results, self._events, self._in_flight = [], [], deque()

    # -- packets ---------------------------------------------------------------------------
    def send(self, kind, fields=b""):
        self.transport.write(encode_packet(kind, fields))

    def receive(self):
        """The next board packet ``(Reply, value)``, or None after ``timeout`` of silence."""
        while not self._pending:
            data = self.transport.read(self.timeout)
            if not data:
                return None
            for body, damaged in self.decoder.feed(data):
                if damaged:
                    raise LinkError(f"damaged packet from the board (bad escape): "
                                    f"{body.hex()}")
                self._pending.append(parse_reply(body, self.event_fields))
        return self._pending.popleft()

    def _note_error(self, value):
        code = value["byte"]
        if code in ErrorCode._value2member_map_:
            code = ErrorCode(code)
        self.errors.append((code, value["frame"], value["offset"]))

    def request(self, kind, fields, want, *, accept=None):
        """Send a command and return the value of its answer (the first packet of type
        ``want`` that ``accept(value)`` approves). Output packets meanwhile are collected.
        INFO and CONFIG are resent at once after an ERROR (nothing else is in flight then);
        any command is resent after ``timeout`` of silence."""
        for _ in range(self.retries + 1):
            self.send(kind, fields)
            while True:
                packet = self.receive()
                if packet is None:
                    break
                reply, value = packet
                if reply == want and (accept is None or accept(value)):
                    return value
                if reply == Reply.ERROR:
                    self._note_error(value)
                    if kind in (Command.INFO, Command.CONFIG):
                        break
                elif self._collect:
                    self._take(reply, value)
        raise LinkError(f"no {want.name} answer to {Command(kind).name} after "
                        f"{self.retries + 1} tries; errors: {self.errors[-5:]}")

    # -- commands ---------------------------------------------------------------------------
    def query_info(self):
        """INFO: what the board was built for; refuses a board built for another layer."""
        self.transport.write(bytes((END,)))   # ends whatever noise came before
        info = self.request(Command.INFO, b"", Reply.INFO)
        c = self.config
        if info.version != PROTOCOL_VERSION:
            raise LinkError(f"board speaks protocol version {info.version}, this driver "
                            f"{PROTOCOL_VERSION}")
        if info.digest != config_digest(c):
            raise LinkError(
                f"the board was built for another layer ({info.height}x{info.width}, "
                f"Cin {info.channels_in}, Cout {info.channels_out}, K {info.kernel_size}, "
                f"digest {info.digest:08x}) than this configuration ({c.height}x{c.width}, "
                f"Cin {c.channels_in}, Cout {c.channels_out}, K {c.kernel_size}, digest "
                f"{config_digest(c):08x}): build it with eventconv synth --config")
        self.info = info
        return info

    def configure(self, *, threshold, shift, dense):
        """CONFIG: set the runtime knobs and reset the engine to its reset state; output of
        earlier frames still arriving is dropped."""
        self._collect = False
        self.request(Command.CONFIG, bytes((threshold, shift, int(dense))), Reply.ACK,
                     accept=lambda v: v["byte"] == Command.CONFIG)
        self._results, self._events, self._in_flight = [], [], deque()
        self._collect = True

    def sync(self):
        """SYNC: the board's expected (frame mod 2**16, offset); every earlier packet has
        been answered when it returns."""
        self._token = (self._token + 1) & 0xFF
        token = self._token
        value = self.request(Command.SYNC, bytes((token,)), Reply.SYNC,
                             accept=lambda v: v["byte"] == token)
        return value["frame"], value["offset"]

    # -- frames -----------------------------------------------------------------------------
    def run(self, frames, progress=None):
        """Stream frames (SPEC FRAMES.npy layout) through the engine from its reset state.

        Returns per frame ``{"events": [(o, py, px, delta), ...], "events_in", "macs",
        "events_out", "cycles", "frame"}`` as the board gave them.
        """
        c = self.config
        frames = c.check_frames(frames)
        if self.info is None:
            self.query_info()
        info = self.info
        samples = np.ascontiguousarray(frames.transpose(0, 2, 3, 1)).reshape(len(frames), -1)
        frame_size = samples.shape[1]
        chunk = info.chunk - info.chunk % info.pixels_per_cycle
        self.configure(threshold=c.threshold, shift=c.shift, dense=c.mode == "dense")
        total = len(frames)
        next_frame, next_offset = 0, 0
        stalls = 0
        while len(self._results) < total:
            while len(self._in_flight) < info.window and next_frame < total:
                count = min(chunk, frame_size - next_offset)
                data = samples[next_frame, next_offset:next_offset + count].tobytes()
                self.transport.write(pixels_packet(next_frame, next_offset, data))
                next_offset += count
                if next_offset == frame_size:
                    next_frame, next_offset = next_frame + 1, 0
                self._in_flight.append((next_frame & 0xFFFF, next_offset))
            done = len(self._results)
            packet = self.receive()
            if packet is not None and packet[0] != Reply.ERROR:
                self._take(*packet)
                if len(self._results) > done:
                    stalls = 0
                    if progress:
                        progress(len(self._results), total)
                continue
            if packet is not None:
                self._note_error(packet[1])
            stalls += 1
            if stalls > self.retries:
                raise LinkError(f"the board makes no progress (frame {len(self._results)} of "
                                f"{total}); errors: {self.errors[-5:]}")
            wire_frame, next_offset = self.sync()
            # The board is between the frames whose output came and the ones sent.
            done = len(self._results)
            next_frame = done + ((wire_frame - done) & 0xFFFF)
            self._in_flight.clear()
        return self._results

    def _take(self, reply, value):
        """An output packet of the current run."""
        if reply == Reply.EVENT:
            self._events.append((value["channel"], value["y"], value["x"], value["delta"]))
        elif reply == Reply.END_OF_FRAME:
            expected = len(self._results) & 0xFFFF
            if value["frame"] != expected:
                raise LinkError(f"end of frame {value['frame']} from the board, expected "
                                f"{expected}: output was lost")
            if value["events_out"] != len(self._events):
                raise LinkError(f"frame {len(self._results)}: the board counted "
                                f"{value['events_out']} output events but "
                                f"{len(self._events)} arrived")
            self._results.append({**value, "events": self._events})
            self._events = []
        elif reply == Reply.ACK and value["byte"] == Command.PIXELS and self._in_flight:
            if (value["frame"], value["offset"]) == self._in_flight[0]:
                self._in_flight.popleft()


def integrate(config, results):
    """OUT.npz arrays from the board's per-frame results (see :func:`rtl_backend.integrate`).

    SPEC gives ``cycles`` for the rtl backend only, so the board's cycle counts stay out.
    """
    from .rtl_backend import integrate as integrate_events
    keys = ("events", "events_in", "events_out", "macs")
    try:
        return integrate_events(config, [{k: r[k] for k in keys} for r in results])
    except ValueError as e:
        raise LinkError(str(e)) from None


def run_board(config, frames, *, port=None, baud_rate=DEFAULT_BAUD_RATE, progress=False,
              timeout=1.0, transport=None):
    """``eventconv run --backend board``: the clip through a board on serial ``port``.

    Returns OUT.npz's arrays (``pooled``, ``events_in``, ``events_out``, ``macs``); the pooled
    maps integrate the output events the board gave. ``transport`` (any
    :class:`ByteTransport`, e.g. the co-simulation) replaces the serial port.
    """
    config.check_frames(frames)   # refuse bad frames before opening the port

    def show(done, total):
        bar = "#" * (30 * done // total)
        print(f"\rboard: [{bar:<30}] {done}/{total} frames", end="", file=sys.stderr,
              flush=True)

    if transport is None:
        with SerialTransport(port, baud_rate) as serial_port:
            link = BoardLink(serial_port, config, timeout=timeout)
            results = link.run(frames, progress=show if progress else None)
    else:
        link = BoardLink(transport, config, timeout=timeout)
        results = link.run(frames, progress=show if progress else None)
    if progress:
        print(file=sys.stderr)
    return integrate(config, results)
