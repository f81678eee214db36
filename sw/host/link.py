"""The protocol client of one board: INFO, CONFIG, SYNC, frames streamed with a window,
output collected, recovery from any error by SYNC (protocol: :mod:`eventconv.protocol`)."""

from collections import deque

import numpy as np

from eventconv.protocol.codec import (
    LinkError,
    config_digest,
    encode_packet,
    event_fields,
    parse_reply,
    pixels_packet,
)
from eventconv.protocol.constants import END, PROTOCOL_VERSION, Command, ErrorCode, Reply
from eventconv.protocol.slip import SlipDecoder

__all__ = ["BoardLink"]


class BoardLink:
    """The protocol client: one board, one configuration.

    Parameters
    ----------
    transport : ByteTransport
    config : :class:`eventconv.core.config.Config`
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
