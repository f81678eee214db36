"""Link faults between the host driver and a board: bytes dropped, flipped, duplicated and
inserted, packets truncated, in both directions, at stated rates (seeded); the host reset
mid-frame; the board reset mid-run; a port that streams text; a board that goes silent or
repeats stale packets. The final results equal the model's, or the run stops with one
:class:`LinkError` line after its stated retries, within a bounded (transport) time.

Two boards: :class:`FakeBoard`, the protocol in Python with the golden model as its engine on
a virtual clock (fast: hundreds of frames at the target rates), and the board's gateware
co-simulated (:class:`~eventconv.sim.board_tb.BoardSimulation`, a few frames). The soak
(``make soak``, ``EVENTCONV_SOAK=1``) runs more frames through both.
"""

import os
import random
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventconv.core.config import Config
from eventconv.core.model import EventConvModel, run_model
from eventconv.host.link import STALLS_PER_RETRY, BoardLink, priming_frames
from eventconv.host.transport import ByteTransport
from eventconv.protocol.codec import (
    LinkError,
    config_digest,
    event_byte_count,
    event_fields,
)
from eventconv.protocol.constants import (
    END,
    MAX_REPLY_BYTES,
    PROTOCOL_VERSION,
    Command,
    ErrorCode,
    Reply,
)
from eventconv.protocol.crc import crc16
from eventconv.protocol.slip import SlipDecoder, slip_escape
from eventconv.protocol.upload import shape_digest, upload_images

SOAK = bool(os.environ.get("EVENTCONV_SOAK"))
BUILD = Path(__file__).resolve().parent.parent / "build" / "sim"


def layer(seed=3, **changes):
    rng = np.random.default_rng(seed)
    cout = changes.pop("channels_out", 3)
    return Config.from_dict({
        "height": 8, "width": 8, "channels_in": 1, "channels_out": cout, "kernel_size": 3,
        "weights": rng.integers(-128, 128, (cout, 1, 3, 3)).tolist(),
        "bias": rng.integers(-3000, 3000, cout).tolist(), "threshold": 12, "shift": 6,
        **changes})


def video(seed, count, config, change=0.2):
    rng = np.random.default_rng(seed)
    shape = (config.height, config.width)
    out = [rng.integers(0, 256, shape)]
    for _ in range(count - 1):
        step = np.where(rng.random(shape) < change, rng.integers(-90, 91, shape), 0)
        out.append(np.clip(out[-1] + step, 0, 255))
    return np.array(out, dtype=np.uint8)


def assert_equals_model(config, frames, results):
    from eventconv.backends.board import integrate
    board = integrate(config, results)
    model = run_model(config, frames)
    for key in ("pooled", "events_in", "events_out", "macs"):
        np.testing.assert_array_equal(board[key], model[key], err_msg=key)


# -- a board in Python --------------------------------------------------------------------------
class FakeBoard(ByteTransport):
    """The protocol's board side in Python, the golden model as its engine, on a virtual clock.

    Answers as the gateware does (checks in the protocol's order; ACK then the frame's
    EVENT packets and END_OF_FRAME once a frame is whole). ``reset()`` is a power cycle: the
    position, frame numbers and engine go back to reset and the knobs to the ``built_in``
    layer's. ``read`` hands out what is queued in pieces of 1..``piece`` bytes.
    """

    def __init__(self, config, *, built_in=None, chunk=32, window=2, byte_seconds=1e-5,
                 piece=40, seed=0, uploads=True):
        self.uploads = uploads
        self.built_in = self.factory = built_in or config
        assert shape_digest(self.built_in) == shape_digest(config)
        self.chunk, self.window, self.byte_seconds, self.piece = chunk, window, byte_seconds, piece
        self.rng = random.Random(seed)
        self.fields = event_fields(config)
        self.event_bytes = event_byte_count(config)
        self.frame_size = config.height * config.width * config.channels_in
        self.time = 0.0
        self.pixels_taken = 0
        self.reset()

    def reset(self):
        self.built_in = c = self.factory
        self.images = [bytearray(image) for image in upload_images(c)]
        self.knobs = {"threshold": c.threshold, "shift": c.shift, "mode": c.mode,
                      "output_threshold": c.output_threshold}
        self.receiver = SlipDecoder()
        self.out = bytearray()
        self._engine_reset()

    def _engine_reset(self):
        self.built_in = _from_images(self.factory, self.images)
        self.model = EventConvModel(self.built_in.replace(**self.knobs))
        self.position = (0, 0)
        self.samples = bytearray()
        self.frame_number = 0

    def now(self):
        return self.time

    def _send(self, kind, fields):
        body = bytes((kind,)) + bytes(fields)
        self.out += slip_escape(body + crc16(body).to_bytes(2, "big")) + bytes((END,))

    def _status(self, kind, byte, frame=None, offset=None):
        frame, offset = self.position if frame is None else (frame, offset)
        self._send(kind, bytes((byte,)) + frame.to_bytes(2, "little")
                   + offset.to_bytes(3, "little"))

    def write(self, data):
        self.time += len(data) * self.byte_seconds
        for body, damaged in self.receiver.feed(data):
            self._packet(body, damaged)

    def read(self, timeout):
        if not self.out:
            self.time += timeout
            return b""
        n = min(len(self.out), self.rng.randint(1, self.piece))
        data = bytes(self.out[:n])
        del self.out[:n]
        self.time += n * self.byte_seconds
        return data

    def _packet(self, body, damaged):
        if damaged:
            return self._status(Reply.ERROR, ErrorCode.FRAMING)
        if len(body) < 3:
            return self._status(Reply.ERROR, ErrorCode.LENGTH)
        if crc16(body) != 0:
            return self._status(Reply.ERROR, ErrorCode.CRC)
        kind, fields = body[0], body[1:-2]
        sizes = {Command.INFO: 0, Command.CONFIG: 4, Command.SYNC: 1}
        if kind not in set(Command):
            return self._status(Reply.ERROR, ErrorCode.COMMAND)
        if kind in sizes and len(fields) != sizes[kind]:
            return self._status(Reply.ERROR, ErrorCode.LENGTH)
        if kind == Command.INFO:
            c = self.built_in
            self._send(Reply.INFO, bytes((PROTOCOL_VERSION,))
                       + config_digest(c).to_bytes(4, "little")
                       + b"".join(v.to_bytes(2, "little") for v in (
                           c.height, c.width, c.channels_in, c.channels_out))
                       + bytes((c.kernel_size, c.pixels_per_cycle))
                       + self.chunk.to_bytes(2, "little") + bytes((self.window,))
                       + (12_000_000).to_bytes(4, "little") + bytes((1,))
                       + (shape_digest(c) if self.uploads else 0).to_bytes(4, "little"))
        elif kind == Command.CONFIG:
            if fields[1] > 1 or fields[2] > 31:
                return self._status(Reply.ERROR, ErrorCode.VALUE)
            self.knobs = {"threshold": fields[0], "mode": "dense" if fields[1] else "event",
                          "shift": fields[2], "output_threshold": fields[3]}
            self._engine_reset()
            self._status(Reply.ACK, Command.CONFIG)
        elif kind == Command.SYNC:
            self._status(Reply.SYNC, fields[0])
        elif kind == Command.WEIGHTS:
            self._weights(fields)
        else:
            self._pixels(fields)

    def _weights(self, fields):
        memory = int.from_bytes(fields[0:2], "little")
        offset = int.from_bytes(fields[2:5], "little")
        count = int.from_bytes(fields[5:7], "little")
        data = fields[7:]
        if not self.uploads:
            return self._status(Reply.ERROR, ErrorCode.COMMAND)
        if (len(fields) < 7 or count != len(data) or not 0 < count <= self.chunk
                or memory >= len(self.images) or offset + count > len(self.images[memory])):
            return self._status(Reply.ERROR, ErrorCode.LENGTH)
        self.images[memory][offset:offset + count] = data
        self._status(Reply.ACK, Command.WEIGHTS, memory, offset + count)

    def _pixels(self, fields):
        if len(fields) < 7:
            return self._status(Reply.ERROR, ErrorCode.LENGTH)
        frame = int.from_bytes(fields[0:2], "little")
        offset = int.from_bytes(fields[2:5], "little")
        count = int.from_bytes(fields[5:7], "little")
        samples = fields[7:]
        ppc = self.built_in.pixels_per_cycle
        if (count != len(samples) or not 0 < count <= self.chunk or count % ppc
                or offset + count > self.frame_size):
            return self._status(Reply.ERROR, ErrorCode.LENGTH)
        if (frame, offset) != self.position:
            return self._status(Reply.ERROR, ErrorCode.POSITION)
        self.samples += samples
        self.pixels_taken += 1
        offset += count
        if offset == self.frame_size:
            self.position = ((frame + 1) & 0xFFFF, 0)
        else:
            self.position = (frame, offset)
        self._status(Reply.ACK, Command.PIXELS)
        if offset == self.frame_size:
            self._frame()

    def _frame(self):
        c = self.built_in
        image = np.frombuffer(bytes(self.samples), np.uint8).reshape(
            c.height, c.width, c.channels_in).transpose(2, 0, 1)
        self.samples = bytearray()
        result = self.model.step(image)
        for o, y, x, delta in result.output_events.tuples():
            word = 0
            for (name, offset, width, _), value in zip(self.fields, (o, y, x, delta),
                                                        strict=True):
                assert name in ("channel", "y", "x", "delta")
                word |= (value & ((1 << width) - 1)) << offset
            self._send(Reply.EVENT, word.to_bytes(self.event_bytes, "little"))
        self._send(Reply.END_OF_FRAME, self.frame_number.to_bytes(2, "little") + b"".join(
            v.to_bytes(4, "little") for v in (result.events_in, result.macs,
                                              result.events_out, 1000 + self.frame_number)))
        self.frame_number = (self.frame_number + 1) & 0xFFFF


def _from_images(layer, images):
    """``layer`` with the weights and bias of the upload images (protocol "Weights and bias")."""
    weights = np.array(layer.weights)
    for lane, image in enumerate(images[:-1]):
        rows = np.frombuffer(bytes(image), np.int8).astype(np.int64)
        weights[lane::layer.lanes] = rows.reshape(weights[lane::layer.lanes].shape)
    bias = np.frombuffer(bytes(images[-1]), "<i4").astype(np.int64)
    return layer.replace(weights=weights.tolist(), bias=bias.tolist())


# -- faults --------------------------------------------------------------------------------------
RATE_NAMES = ("drop", "flip", "duplicate", "insert", "truncate")


class LinkFaults(ByteTransport):
    """Between the driver and a board transport: damages the bytes of each direction at stated
    rates, from one seed.

    ``to_board`` and ``to_host``: dicts of rates, per byte for ``drop`` (the byte is lost),
    ``flip`` (one random bit of it inverted), ``duplicate`` (sent twice) and ``insert`` (a
    random byte added after it), per packet for ``truncate`` (the packet's bytes from a random
    point up to its END are lost: a host write is one packet; from the board, a packet starts
    after each END). ``counts`` counts every fault done, per direction.
    """

    def __init__(self, transport, *, seed=0, to_board=None, to_host=None):
        self.transport = transport
        self.rng = random.Random(seed)
        self.rates = {"to_board": dict(to_board or {}), "to_host": dict(to_host or {})}
        for rates in self.rates.values():
            assert set(rates) <= set(RATE_NAMES), rates
        self.counts = {d: dict.fromkeys(RATE_NAMES, 0) for d in self.rates}
        self.cut = None            # to_host: bytes left before the packet's cut, or "cutting"
        self.packet_start = True

    def now(self):
        return self.transport.now()

    def _byte_faults(self, byte, direction, out):
        rates, counts, rng = self.rates[direction], self.counts[direction], self.rng
        if rng.random() < rates.get("drop", 0):
            counts["drop"] += 1
            return
        if rng.random() < rates.get("flip", 0):
            counts["flip"] += 1
            byte ^= 1 << rng.randrange(8)
        out.append(byte)
        if rng.random() < rates.get("duplicate", 0):
            counts["duplicate"] += 1
            out.append(byte)
        if rng.random() < rates.get("insert", 0):
            counts["insert"] += 1
            out.append(rng.randrange(256))

    def write(self, data):
        data = bytes(data)
        if len(data) > 2 and self.rng.random() < self.rates["to_board"].get("truncate", 0):
            self.counts["to_board"]["truncate"] += 1
            data = data[:self.rng.randrange(1, len(data) - 1)]
        out = bytearray()
        for byte in data:
            self._byte_faults(byte, "to_board", out)
        self.transport.write(bytes(out))

    def _to_host(self, data):
        out = bytearray()
        truncate = self.rates["to_host"].get("truncate", 0)
        for byte in data:
            if self.packet_start:
                self.packet_start = False
                if self.rng.random() < truncate:
                    self.counts["to_host"]["truncate"] += 1
                    self.cut = self.rng.randrange(1, 12)
            if byte == END:
                self.packet_start, self.cut = True, None
            elif self.cut is not None:
                self.cut -= 1
                if self.cut < 0:
                    continue                      # cut: lost up to the END
            self._byte_faults(byte, "to_host", out)
        return bytes(out)

    def read(self, timeout):
        while True:
            data = self.transport.read(timeout)
            if not data:
                return b""
            data = self._to_host(data)
            if data:
                return data

    def close(self):
        self.transport.close()


def rates(percent_drop=1.0, percent_flip=1.0, percent_duplicate=0.1, percent_insert=0.1,
          percent_truncate=0.2):
    """The target of issue 19 (1 % of bytes lost, 1 % with a bit flipped) with a few
    duplicated and inserted bytes and truncated packets on top."""
    return {"drop": percent_drop / 100, "flip": percent_flip / 100,
            "duplicate": percent_duplicate / 100, "insert": percent_insert / 100,
            "truncate": percent_truncate / 100}


class DamageByKind(ByteTransport):
    """Damages chosen board packets: ``damage[(kind, n)]`` is applied to the wire bytes (END
    included) of the n-th packet of type ``kind`` the board sends."""

    def __init__(self, transport, damage):
        self.transport, self.damage = transport, dict(damage)
        self.packet = bytearray()
        self.seen = {}

    def now(self):
        return self.transport.now()

    def write(self, data):
        self.transport.write(data)

    def read(self, timeout):
        out = bytearray()
        while not out:
            data = self.transport.read(timeout)
            if not data:
                return bytes(out)
            for byte in data:
                self.packet.append(byte)
                if byte == END:
                    packet, kind = bytes(self.packet), self.packet[0]
                    self.packet.clear()
                    n = self.seen.get(kind, 0)
                    self.seen[kind] = n + 1
                    if (kind, n) in self.damage:
                        packet = self.damage.pop((kind, n))(packet)
                    out += packet
        return bytes(out)


def flip_bit(index, bit=0):
    def damage(packet):
        packet = bytearray(packet)
        packet[index] ^= 1 << bit
        return bytes(packet)
    return damage


def drop_byte(index):
    return lambda packet: packet[:index] + packet[index + 1:]


TIMEOUT = 1e-3      # virtual seconds


# -- defects of issue 19, each tried first on the driver before its fix --------------------------
@pytest.mark.parametrize("damage", [flip_bit(3, 5), drop_byte(4), drop_byte(-1)],
                         ids=["flipped bit", "lost byte", "lost END"])
def test_damaged_info_answer_is_asked_again(damage):
    """Before INFO nothing is in flight: a damaged answer is refused and INFO asked again."""
    config = layer()
    board = FakeBoard(config)
    link = BoardLink(DamageByKind(board, {(Reply.INFO, 0): damage}), config, timeout=TIMEOUT)
    assert link.query_info().digest == config_digest(config)
    assert link.damaged >= 1


@pytest.mark.parametrize("what", ["flip", "drop", "drop END", "flip END"])
@pytest.mark.parametrize("kind", [Reply.EVENT, Reply.END_OF_FRAME, Reply.ACK],
                         ids=lambda kind: kind.name)
def test_damaged_output_packet_mid_run_is_recovered(kind, what):
    """A damaged EVENT or END_OF_FRAME loses a frame's output, which only the engine can give
    again: the driver runs the frame again from the state before it (priming frames) and
    merges what arrived whole. A damaged ACK costs a resynchronisation."""
    config = layer()
    frames = video(1, 4, config)
    # A packet of frame 1's output (ACK: of its second PIXELS packet).
    n = {Reply.EVENT: int(run_model(config, frames)["events_out"][0]) + 1,
         Reply.END_OF_FRAME: 1, Reply.ACK: 3}[kind]
    damage = {"flip": flip_bit(1, 3), "drop": drop_byte(1), "drop END": drop_byte(-1),
              "flip END": flip_bit(-1, 0)}[what]
    link = BoardLink(DamageByKind(FakeBoard(config), {(kind, n): damage}), config,
                     timeout=TIMEOUT)
    assert_equals_model(config, frames, link.run(frames))
    assert link.damaged >= 1
    if kind != Reply.ACK:
        assert link.reruns >= 1 and link.priming >= 1


class TextPort(ByteTransport):
    """A port that streams text (a console, another device) and never answers."""

    def __init__(self, limit_reads=200_000):
        self.time, self.reads, self.limit_reads = 0.0, 0, limit_reads
        self.link = None
        self.largest_buffer = 0

    def now(self):
        return self.time

    def write(self, data):
        pass

    def read(self, timeout):
        self.reads += 1
        if self.link is not None:
            self.largest_buffer = max(self.largest_buffer, len(self.link.decoder.body))
        if self.reads > self.limit_reads:
            raise AssertionError(f"the driver still waits after {self.reads} reads "
                                 f"({self.time:.1f} s); buffer {self.largest_buffer} bytes")
        self.time += 1e-3
        return b"[ 12.345] usb 1-1: new full-speed USB device number 5\r\nlogin: " * 10


def test_port_streaming_text_ends_with_one_line_and_a_bounded_buffer():
    config = layer()
    port = TextPort()
    link = BoardLink(port, config, timeout=0.05, retries=3)
    port.link = link
    with pytest.raises(LinkError) as error:
        link.run(video(1, 2, config))
    message = str(error.value)
    assert "\n" not in message
    assert "INFO" in message and "4 tries" in message and "not protocol packets" in message
    assert "login" in message            # what the port sent, to recognise it
    assert port.largest_buffer <= MAX_REPLY_BYTES   # the decoder's limit, not the text
    assert port.time <= 4 * 0.05 + 0.01   # retries + 1 waits of `timeout`


class StaleEvents(ByteTransport):
    """A board that ignores the host and repeats valid (stale) EVENT packets forever."""

    def __init__(self, config, limit_reads=100_000):
        self.time, self.reads, self.limit_reads = 0.0, 0, limit_reads
        body = bytes((Reply.EVENT,)) + bytes(event_byte_count(config))
        self.packet = slip_escape(body + crc16(body).to_bytes(2, "big")) + bytes((END,))

    def now(self):
        return self.time

    def write(self, data):
        pass

    def read(self, timeout):
        self.reads += 1
        if self.reads > self.limit_reads:
            raise AssertionError(f"the driver still waits after {self.reads} reads")
        self.time += 1e-5
        return self.packet


@pytest.mark.parametrize("stage", ["info", "config", "sync"])
def test_stale_packets_do_not_hang_a_request(stage):
    config = layer()
    link = BoardLink(StaleEvents(config), config, timeout=0.01, retries=2)
    with pytest.raises(LinkError) as error:
        if stage == "info":
            link.query_info()
        elif stage == "config":
            link.configure(threshold=1, shifts=[2], dense=False)
        else:
            link.sync()
    # SYNC, repeated through a long run, gets more tries than a command sent once.
    tries = 3 * STALLS_PER_RETRY if stage == "sync" else 3
    assert "\n" not in str(error.value) and f"{tries} tries" in str(error.value)


class ResettingBoard(FakeBoard):
    """Power-cycles after the PIXELS packets numbered in ``at`` (counted over the run)."""

    def __init__(self, config, at, **kwargs):
        super().__init__(config, **kwargs)
        self.at = set(at)
        self.resets = 0

    def _pixels(self, fields):
        taken = self.pixels_taken
        super()._pixels(fields)
        if self.pixels_taken != taken and self.pixels_taken in self.at:
            self.reset()
            self.resets += 1


def test_board_reset_mid_run_is_named_and_the_run_resumes():
    """The board's power-on knobs (the layer it was built with) differ from the run's: a
    reset must be noticed and CONFIG sent again, or frames would be computed wrongly."""
    config = layer()
    built_in = config.replace(threshold=0, shift=2)
    board = ResettingBoard(config, at={3, 10}, built_in=built_in)
    notes = []
    link = BoardLink(board, config, timeout=TIMEOUT, report=notes.append)
    frames = video(2, 8, config)
    assert_equals_model(config, frames, link.run(frames))
    assert board.resets == 2
    assert len(notes) == 2 and all("reset" in note for note in notes), notes


def shuffled(config, seed=99):
    """``config`` with each output channel's weights shuffled: other weights, the same range
    (so the same shape: accumulator width)."""
    rng = np.random.default_rng(seed)
    weights = np.array(config.weights)
    flat = [rng.permutation(w.reshape(-1)) for w in weights]
    return config.replace(weights=np.array(flat).reshape(weights.shape).tolist(),
                          bias=(np.array(config.bias)[::-1]).tolist())


def test_uploaded_weights_survive_faults_and_are_sent_again_after_a_reset():
    """A board built with other weights of the same shape: the driver uploads the run's
    (WEIGHTS, through byte loss, flips and truncations), and again after each power cycle,
    which brings the built-in weights back; every result equals the model of the run's."""
    config = layer(seed=3)
    board = ResettingBoard(config, at={3, 10}, built_in=shuffled(config))
    faults = LinkFaults(board, seed=4, to_board=rates(), to_host=rates())
    link = BoardLink(faults, config, timeout=TIMEOUT)
    frames = video(2, 8, config)
    assert_equals_model(config, frames, link.run(frames))
    assert board.resets == 2 and link.uploads == 3


def test_a_board_without_uploads_takes_only_its_own_weights():
    config = layer(seed=3)
    assert BoardLink(FakeBoard(config, uploads=False), config).query_info().shape == 0
    link = BoardLink(FakeBoard(config, built_in=shuffled(config), uploads=False), config)
    with pytest.raises(LinkError, match="another network .* takes no uploads") as error:
        link.query_info()
    assert "\n" not in str(error.value)


def test_board_that_keeps_resetting_stops_the_run_with_one_line():
    config = layer()
    board = ResettingBoard(config, at=range(5, 10_000, 5))
    link = BoardLink(board, config, timeout=TIMEOUT, retries=3)
    with pytest.raises(LinkError, match=r"^the board was reset 4 times") as error:
        link.run(video(2, 20, config))
    assert "\n" not in str(error.value)


class GoesSilent(FakeBoard):
    """Stops answering (unplugged, hung) after ``after`` PIXELS packets."""

    def __init__(self, config, after, **kwargs):
        super().__init__(config, **kwargs)
        self.after = after

    def write(self, data):
        if self.pixels_taken < self.after:
            super().write(data)

    def read(self, timeout):
        if self.pixels_taken >= self.after:
            self.out.clear()
        return super().read(timeout)


def test_silent_board_stops_the_run_with_one_line_in_bounded_time():
    config = layer()
    board = GoesSilent(config, after=3)
    link = BoardLink(board, config, timeout=TIMEOUT, retries=4)
    with pytest.raises(LinkError) as error:
        link.run(video(2, 8, config))
    assert "\n" not in str(error.value)
    assert "no SYNC answer" in str(error.value) or "no progress" in str(error.value)
    assert board.time < 50 * TIMEOUT


class HostCrash(Exception):
    pass


class CrashingHost(ByteTransport):
    """The host dies in the middle of its ``at``-th PIXELS packet (half of it sent)."""

    def __init__(self, transport, at):
        self.transport, self.at, self.pixels = transport, at, 0

    def now(self):
        return self.transport.now()

    def read(self, timeout):
        return self.transport.read(timeout)

    def write(self, data):
        if len(data) > 2 and data[1] == Command.PIXELS:
            self.pixels += 1
            if self.pixels == self.at:
                self.transport.write(data[:len(data) // 2])
                raise HostCrash
        self.transport.write(data)


@pytest.mark.parametrize("at", [2, 5])
def test_host_reset_mid_frame_then_a_new_run_equals_the_model(at):
    """A driver dies mid-packet with frames in flight and output queued; a new driver on the
    same port (stale answers and output arriving first) gives the model's results."""
    config = layer()
    frames = video(3, 5, config)
    board = FakeBoard(config)
    with pytest.raises(HostCrash):
        BoardLink(CrashingHost(board, at), config, timeout=TIMEOUT).run(frames)
    link = BoardLink(board, config, timeout=TIMEOUT)
    assert_equals_model(config, frames, link.run(frames))


# -- the driver's recovery, on the Python board ------------------------------------------------
@pytest.mark.parametrize("changes", [
    {}, {"threshold": 0}, {"threshold": 100}, {"threshold": 200}, {"mode": "dense"},
    {"output_threshold": 3}, {"channels_in": 2, "weights": np.ones((3, 2, 3, 3), int).tolist(),
                              "pixels_per_cycle": 2}])
def test_rates_survived_on_the_python_board(changes):
    """1 % of bytes dropped, 1 % flipped, 0.1 % duplicated, 0.1 % inserted and 0.2 % of
    packets truncated, in both directions: every result equals the model's."""
    config = layer(**changes)
    frames = (np.random.default_rng(5).integers(0, 256, (12, config.channels_in, 8, 8))
              .astype(np.uint8).reshape(config.frames_shape(12)))
    if config.channels_in == 1:
        frames = video(5, 12, config)
    board = FakeBoard(config)
    faults = LinkFaults(board, seed=7, to_board=rates(), to_host=rates())
    link = BoardLink(faults, config, timeout=TIMEOUT)
    assert_equals_model(config, frames, link.run(frames))
    assert sum(faults.counts["to_host"].values()) > 10
    assert sum(faults.counts["to_board"].values()) > 10


@pytest.mark.parametrize("seed", range(3 if not SOAK else 40))
def test_python_board_soak(seed):
    """More frames, the target rates (1 % byte loss and 1 % bit flips each way, with
    duplicates, insertions and truncations) and seeds."""
    config = layer(seed=seed)
    count = 30 if not SOAK else 250
    frames = video(seed, count, config)
    faults = LinkFaults(FakeBoard(config, seed=seed), seed=seed, to_board=rates(),
                        to_host=rates())
    link = BoardLink(faults, config, timeout=TIMEOUT)
    assert_equals_model(config, frames, link.run(frames))


@pytest.mark.parametrize("seed", [6, 13])
def test_a_long_run_at_the_target_rates_does_not_give_up(seed):
    """250 frames at the target rates: thousands of resynchronisations, about half without
    progress and a third of the SYNC tries unanswered. Seed 6 once gave up after 11
    resynchronisations in a row without progress, seed 13 after 11 SYNC tries in a row."""
    config = layer(seed=seed)
    frames = video(seed, 250, config)
    faults = LinkFaults(FakeBoard(config, seed=seed), seed=seed, to_board=rates(),
                        to_host=rates())
    link = BoardLink(faults, config, timeout=TIMEOUT)
    assert_equals_model(config, frames, link.run(frames))
    assert link.damaged > 1000


def test_hopeless_link_stops_with_one_line():
    """Half the bytes damaged: the driver gives up with one line after its stated retries."""
    config = layer()
    faults = LinkFaults(FakeBoard(config), seed=1, to_host=rates(20, 20, 5, 5, 20),
                        to_board=rates(20, 20, 5, 5, 20))
    link = BoardLink(faults, config, timeout=TIMEOUT, retries=3)
    with pytest.raises(LinkError) as error:
        link.run(video(1, 6, config))
    assert "\n" not in str(error.value)


# -- through the command line ---------------------------------------------------------------
class PortServer:
    """A TCP port (pyserial ``socket://``) that streams text, or closes after a few bytes."""

    def __init__(self, mode):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.mode, self.stop = mode, threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.server.settimeout(10)
        try:
            connection, _ = self.server.accept()
        except OSError:
            return
        with connection:
            if self.mode == "close":
                connection.recv(16)
                return
            while not self.stop.is_set():
                try:
                    connection.sendall(b"login: \r\n" * 50)
                except OSError:
                    return
                time.sleep(0.002)

    def close(self):
        self.stop.set()
        self.server.close()
        self.thread.join(5)


@pytest.mark.parametrize("mode", ["text", "close"])
def test_cli_board_port_that_streams_text_or_closes_ends_with_one_line(tmp_path, monkeypatch,
                                                                        capsys, mode):
    import json

    from eventconv import cli
    from eventconv.backends import board as board_backend
    monkeypatch.setattr(board_backend, "TIMEOUT", 0.2)
    config = layer()
    (tmp_path / "cfg.json").write_text(json.dumps(config.to_dict()))
    np.save(tmp_path / "frames.npy", video(1, 2, config))
    out = tmp_path / "out.npz"
    server = PortServer(mode)
    result = {}

    def run():
        result["code"] = cli.main([
            "run", "--config", str(tmp_path / "cfg.json"), "--frames",
            str(tmp_path / "frames.npy"), "--backend", "board", "--port",
            f"socket://127.0.0.1:{server.port}", "--out", str(out), "--quiet"])

    try:
        thread = threading.Thread(target=run, daemon=True)
        started = time.monotonic()
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), "run --backend board hangs"
    finally:
        server.close()
    assert result["code"] == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("eventconv: error: "), err
    assert not out.exists()
    assert time.monotonic() - started < 30


# -- the board's gateware, co-simulated --------------------------------------------------------
COSIM_TIMEOUT = 30e-6      # simulated seconds: 37 byte times, well above a 4 x 4 frame's work


def small_layer(seed=11):
    """4 x 4, 2 output channels: the smallest board, its frames a few dozen bytes each way."""
    rng = np.random.default_rng(seed)
    return Config.from_dict({"height": 4, "width": 4, "channels_in": 1, "channels_out": 2,
                             "kernel_size": 3,
                             "weights": rng.integers(-128, 128, (2, 1, 3, 3)).tolist(),
                             "bias": [300, -200], "threshold": 20, "shift": 6})


@pytest.fixture(scope="module")
def simulated_board():
    from eventconv.sim.board_tb import BoardSimulation
    config = small_layer()
    simulator = "verilator" if SOAK else "icarus"
    with BoardSimulation(config, chunk=8, timeout_cycles=3000, build_root=BUILD,
                         simulator=simulator) as board:
        yield config, board


def test_cosim_damaged_board_packets_are_recovered(simulated_board):
    """On the gateware: a damaged INFO answer is asked again; a flipped bit in an EVENT and a
    lost byte of an END_OF_FRAME lose output that only the engine can give again: the frames
    are run again from the engine state before them (priming frames), the results equal
    the model's."""
    config, board = simulated_board
    frames = video(6, 2, config, change=0.3)
    damage = {(Reply.INFO, 0): flip_bit(2, 1), (Reply.EVENT, 2): flip_bit(1, 6),
              (Reply.END_OF_FRAME, 1): drop_byte(5)}
    link = BoardLink(DamageByKind(board, damage), config, timeout=COSIM_TIMEOUT)
    assert_equals_model(config, frames, link.run(frames))
    assert link.damaged == 3 and link.reruns >= 1 and link.priming >= 1


def test_cosim_board_survives_faults_both_ways_and_a_host_reset(simulated_board):
    """The gateware behind :class:`LinkFaults` at the target rates (1 % of bytes lost, 1 %
    with a bit flipped, 0.1 % duplicated, 0.1 % inserted, 0.2 % of packets truncated, both
    ways); then a host that dies mid-packet, and a new driver on the same line."""
    config, board = simulated_board
    frames = video(4, 2, config, change=0.3)
    faults = LinkFaults(board, seed=1, to_board=rates(), to_host=rates())
    link = BoardLink(faults, config, timeout=COSIM_TIMEOUT)
    assert_equals_model(config, frames, link.run(frames))
    assert sum(faults.counts["to_host"].values()) and sum(faults.counts["to_board"].values())
    with pytest.raises(HostCrash):
        BoardLink(CrashingHost(board, 3), config, timeout=COSIM_TIMEOUT).run(frames)
    link = BoardLink(board, config, timeout=COSIM_TIMEOUT)
    assert_equals_model(config, frames, link.run(frames))


SOAK_FRAMES = int(os.environ.get("EVENTCONV_SOAK_FRAMES", 1000))


# Only under make soak (EVENTCONV_SOAK=1): defined, not skipped, so the normal run shows no skips.
if SOAK:
    @pytest.mark.parametrize("seed", range(4))
    def test_cosim_soak(simulated_board, seed):
        """A quarter of EVENTCONV_SOAK_FRAMES (default 1000) frames per seed through the
        co-simulated board at the target rates both ways: 0 wrong frames."""
        config, board = simulated_board
        frames = video(100 + seed, SOAK_FRAMES // 4, config, change=0.3)
        faults = LinkFaults(board, seed=seed, to_board=rates(), to_host=rates())
        link = BoardLink(faults, config, timeout=COSIM_TIMEOUT)
        assert_equals_model(config, frames, link.run(frames))
        print(f"soak seed {seed}: {len(frames)} frames, faults {faults.counts}, "
              f"{link.damaged} damaged packets refused, {len(link.errors)} errors answered, "
              f"{link.reruns} frames run again with {link.priming} priming frames")


# -- priming ---------------------------------------------------------------------------------
@st.composite
def references(draw, threshold, size=12):
    """A reference the detector can give: from 0, frames through the detector."""
    reference = np.zeros(size, np.uint8)
    for frame in draw(st.lists(st.lists(st.integers(0, 255), min_size=size, max_size=size),
                               max_size=4)):
        frame = np.array(frame, np.uint8)
        reference = np.where(np.abs(frame.astype(int) - reference) > threshold, frame,
                             reference).astype(np.uint8)
    return reference


@settings(derandomize=True, deadline=None, max_examples=200)
@given(st.data(), st.sampled_from([0, 1, 12, 63, 84, 85, 127, 128, 200, 255]))
def test_priming_frames_take_the_reference_where_it_must_go(data, threshold):
    current = data.draw(references(threshold))
    target = data.draw(references(threshold))
    frames = priming_frames(current, target, threshold)
    reference = current
    for frame in frames:
        reference = np.where(np.abs(frame.astype(int) - reference) > threshold, frame,
                             reference).astype(np.uint8)
    np.testing.assert_array_equal(reference, target)
    assert len(frames) <= (2 if threshold < 85 else 4)
    if np.array_equal(current, target):
        assert frames == []
    dense = priming_frames(current, target, threshold, dense=True)
    assert [f.tolist() for f in dense] == ([] if np.array_equal(current, target)
                                           else [target.tolist()])
