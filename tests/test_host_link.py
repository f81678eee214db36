"""HostLink, the protocol FSM, at byte level in the Amaranth simulator.

The host side is the driver's own codec (eventconv.host.link: encode_packet, pixels_packet,
SlipDecoder, parse_reply); the engine is a stand-in that records pixel beats and gives
scripted events, so every packet type, every error code and the recovery after each error
are checked without the engine or the UART.
"""

import random
from collections import deque

import numpy as np
import pytest
from amaranth.sim import Simulator

from eventconv.core.config import Config
from eventconv.core.network import Network
from eventconv.hw.link.host_link import HostLink
from eventconv.hw.target import ECP5, GENERIC
from eventconv.protocol.codec import (
    as_network,
    config_digest,
    encode_packet,
    event_fields,
    parse_reply,
    pixels_packet,
    weights_fields,
)
from eventconv.protocol.constants import END, ESC, PROTOCOL_VERSION, Command, ErrorCode, Reply
from eventconv.protocol.crc import crc16
from eventconv.protocol.slip import SlipDecoder
from eventconv.protocol.upload import shape_digest, upload_images, upload_memories
from streams import add_protocol_checkers, stall_profiles, stream_get, stream_put

CLOCK = 12_000_000


def layer(h=4, w=4, cin=1, cout=3, ppc=1, seed=0):
    rng = np.random.default_rng(seed)
    return Config.from_dict({
        "height": h, "width": w, "channels_in": cin, "channels_out": cout, "kernel_size": 3,
        "weights": rng.integers(-128, 128, (cout, cin, 3, 3)).tolist(),
        "bias": rng.integers(-100, 100, cout).tolist(), "threshold": 7, "shift": 3,
        "pixels_per_cycle": ppc})


class LinkBench:
    """HostLink with a host (bytes in, decoded answers out) and an engine stand-in."""

    def __init__(self, config, *, chunk=8, window=2, timeout=300, stall=0.0, idle=0.0,
                 seed=0, ram_read_register=False, uploads=True):
        self.config = as_network(config).first
        self.layers = len(as_network(config).layers)
        self.dut = HostLink(config=config, chunk=chunk, window=window, timeout_cycles=timeout,
                            clock_frequency=CLOCK,
                            target=ECP5 if ram_read_register else GENERIC, uploads=uploads)
        self.rng = random.Random(seed)
        self.stall, self.idle = stall, idle
        self.to_board = deque()           # (byte, framing_error, overrun)
        self.decoder = SlipDecoder()
        self.fields = event_fields(config)
        self.answers = []                 # (Reply, value)
        self.raw = bytearray()
        self.beats = []                   # (samples, first, last)
        self.engine_out = deque()         # event dicts; {"end_of_frame": 1, "figures": ...}
        self.engine_ready = True
        self.sink_ready = True
        self.resets = 0
        self.uploads = []                 # (memory, address, byte) written on ``upload``

    def write(self, data, *, framing_error_at=None, overrun_at=None):
        for i, byte in enumerate(data):
            self.to_board.append((byte, int(i == framing_error_at), int(i == overrun_at)))

    async def _source(self, ctx):
        while True:
            if self.to_board:
                byte, framing, overrun = self.to_board.popleft()
                await stream_put(ctx, self.dut.received,
                                 {"data": byte, "framing_error": framing, "overrun": overrun},
                                 rng=self.rng, idle=self.idle)
            else:
                await ctx.tick()

    async def _sink(self, ctx):
        while True:
            if not self.sink_ready:
                await ctx.tick()
                continue
            byte = await stream_get(ctx, self.dut.send, rng=self.rng, stall=self.stall)
            self.raw.append(byte)
            for body, damaged in self.decoder.feed(bytes((byte,))):
                assert not damaged
                self.answers.append(parse_reply(body, self.fields, self.layers))

    async def _pixels(self, ctx):
        ppc = self.config.pixels_per_cycle
        while True:
            if not self.engine_ready:
                await ctx.tick()
                continue
            beat = await stream_get(ctx, self.dut.pixels, rng=self.rng, stall=self.stall)
            self.beats.append(([int(beat.data[i]) for i in range(ppc)], int(beat.first),
                               int(beat.last)))

    async def _events(self, ctx):
        events = self.dut.events
        while True:
            if not self.engine_out:
                await ctx.tick()
                continue
            item = self.engine_out.popleft()
            figures = item.pop("figures", None)
            while self.rng.random() < self.idle:
                await ctx.tick()
            ctx.set(events.payload, {"channel": 0, "y": 0, "x": 0, "delta": 0,
                                     "end_of_frame": 0, **item})
            ctx.set(events.valid, 1)
            while True:
                _, _, ready, reset = await ctx.tick().sample(events.ready,
                                                            self.dut.engine_reset)
                if reset:                     # the engine's output is gone with its reset
                    self.engine_out.clear()
                    figures = None
                    break
                if ready:
                    break
            ctx.set(events.valid, 0)
            if figures is not None:
                # Valid from the cycle after the end-of-frame beat, as the engine's.
                for name, value in figures.items():
                    ctx.set(getattr(self.dut, name), value)

    async def _resets(self, ctx):
        upload = self.dut.upload
        while True:
            _, _, reset, en, memory, address, byte = await ctx.tick().sample(
                self.dut.engine_reset, upload.en, upload.memory, upload.address, upload.data)
            self.resets += reset
            if en:
                self.uploads.append((memory, address, byte))

    async def wait_until(self, ctx, condition, limit=20000):
        for _ in range(limit):
            if condition():
                return
            await ctx.tick()
        raise AssertionError(f"condition not met; answers: {self.answers}")

    async def wait_answers(self, ctx, count, limit=20000):
        for _ in range(limit):
            if len(self.answers) >= count:
                return self.answers[:count]
            await ctx.tick()
        raise AssertionError(f"{len(self.answers)} answers, expected {count}: {self.answers}")

    def run(self, script):
        sim = Simulator(self.dut)
        sim.add_clock(1e-6)
        add_protocol_checkers(sim, self.dut, resets={"events": self.dut.engine_reset})
        for process in (self._source, self._sink, self._pixels, self._events, self._resets):
            sim.add_testbench(process, background=True)
        sim.add_testbench(script)
        sim.run()
        assert self.finished, "script did not finish"

    def script(self, body):
        async def wrapped(ctx):
            await body(ctx)
            self.finished = True
        self.finished = False
        return wrapped


def status(kind, byte, frame, offset):
    return (kind, {"byte": byte, "frame": frame, "offset": offset})


def test_info_reports_the_built_in_layer():
    config = layer(h=6, w=8, cin=2, cout=4, ppc=2)
    bench = LinkBench(config, chunk=16)

    async def body(ctx):
        bench.write(encode_packet(Command.INFO))
        (kind, info), = await bench.wait_answers(ctx, 1)
        assert kind == Reply.INFO
        assert (info.version, info.digest, info.height, info.width, info.channels_in,
                info.channels_out, info.kernel_size, info.pixels_per_cycle, info.chunk,
                info.window, info.clock_frequency, info.layers, info.shape) == (
            PROTOCOL_VERSION, config_digest(config), 6, 8, 2, 4, 3, 2, 16, 2, CLOCK, 1,
            shape_digest(config))

    bench.run(bench.script(body))


@pytest.mark.parametrize("idle,stall", stall_profiles())
@pytest.mark.parametrize("ppc,cin,ram_read_register", [(1, 1, False), (2, 1, False),
                                                       (4, 2, False), (2, 1, True)])
def test_frames_go_to_the_engine_and_outputs_come_back(ppc, cin, ram_read_register, idle,
                                                       stall):
    config = layer(h=4, w=4, cin=cin, cout=3, ppc=ppc)
    bench = LinkBench(config, chunk=8, stall=stall, idle=idle, seed=ppc * 10 + cin,
                      ram_read_register=ram_read_register)
    size = 16 * cin
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, size), dtype=np.uint8)
    frames[1, :4] = [END, ESC, END, ESC]    # bytes that need escaping
    events = [[{"channel": f % 3, "y": e % 2, "x": (e + f) % 2, "delta": e * 37 - 250}
               for e in range(f + 1)] for f in range(3)]
    figures = [{"frame_events_in": 11 + f, "frame_macs": 0xDEADBEEF - f,
                "frame_events_out": f + 1, "frame_cycles": 1_000_000 + f} for f in range(3)]

    async def body(ctx):
        bench.write(encode_packet(Command.CONFIG, bytes((9, 1, 4, 6))))
        answers = await bench.wait_answers(ctx, 1)
        assert answers[0] == status(Reply.ACK, Command.CONFIG, 0, 0)
        assert (ctx.get(bench.dut.threshold), ctx.get(bench.dut.shift),
                ctx.get(bench.dut.dense), ctx.get(bench.dut.output_threshold),
                bench.resets) == (9, 4, 1, 6, 1)
        acks = []
        for f in range(3):
            for offset in range(0, size, 8):
                bench.write(pixels_packet(f, offset, frames[f, offset:offset + 8].tobytes()))
                acks.append(status(Reply.ACK, Command.PIXELS, f + (offset + 8) // size,
                                   (offset + 8) % size))
                # Within the window of 2: wait for the ACK of the packet before last.
                await bench.wait_until(ctx, lambda: sum(
                    a[0] == Reply.ACK and a[1]["byte"] == Command.PIXELS
                    for a in bench.answers) >= len(acks) - 1)
            for event in events[f]:
                bench.engine_out.append(dict(event))
            bench.engine_out.append({"end_of_frame": 1, "figures": figures[f]})
        total = 1 + len(acks) + sum(len(e) + 1 for e in events)
        answers = await bench.wait_answers(ctx, total, limit=100_000)
        got_acks = [a for a in answers[1:] if a[0] == Reply.ACK]
        assert got_acks == acks
        outputs = [a for a in answers[1:] if a[0] != Reply.ACK]
        expected = []
        for f in range(3):
            expected += [(Reply.EVENT, e) for e in events[f]]
            expected.append((Reply.END_OF_FRAME, {
                "frame": f, "events_in": (11 + f,), "macs": (0xDEADBEEF - f,),
                "events_out": (f + 1,), "cycles": 1_000_000 + f}))
        assert outputs == expected
        samples = [s for beat in bench.beats for s in beat[0]]
        assert samples == frames.reshape(-1).tolist()
        beats_per_frame = size // ppc
        for i, (_, first, last) in enumerate(bench.beats):
            assert first == (i % beats_per_frame == 0)
            assert last == (i % beats_per_frame == beats_per_frame - 1)

    bench.run(bench.script(body))


def corrupt(packet, index, value=None):
    data = bytearray(packet)
    data[index] = (data[index] ^ 0x5A) if value is None else value
    return bytes(data)


def weights_packet(memory, offset, data):
    return encode_packet(Command.WEIGHTS, weights_fields(memory, offset, data))


def bad_packets(config):
    """(name, bytes, write options, expected error code) for every error the link reports."""
    good = pixels_packet(0, 0, bytes(range(8)))
    size = config.height * config.width * config.channels_in
    raw_pixels = (bytes((Command.PIXELS, 0, 0, 0, 0, 0)) + (5).to_bytes(2, "little")
                  + bytes(4))
    sizes = [memory.size for memory in upload_memories(config)]
    return [
        ("damaged byte", corrupt(good, 12), {}, ErrorCode.CRC),
        ("garbage", bytes((END, 0x17, 0x99, 0x42, 0x00, 0x13, END)), {}, ErrorCode.CRC),
        ("one garbage byte", bytes((END, 0x55, END)), {}, ErrorCode.LENGTH),
        ("unknown type", encode_packet(0x09, b"\x01"), {}, ErrorCode.COMMAND),
        ("INFO too long", encode_packet(Command.INFO, b"\x00"), {}, ErrorCode.LENGTH),
        ("CONFIG too short", encode_packet(Command.CONFIG, b"\x01\x02"), {},
         ErrorCode.LENGTH),
        ("SYNC too long", encode_packet(Command.SYNC, b"\x01\x02"), {}, ErrorCode.LENGTH),
        ("count above samples", bytes((END,)) + raw_pixels + crc16(raw_pixels).to_bytes(2, "big")
         + bytes((END,)), {}, ErrorCode.LENGTH),
        ("zero samples", pixels_packet(0, 0, b""), {}, ErrorCode.LENGTH),
        ("above chunk", pixels_packet(0, 0, bytes(9)), {}, ErrorCode.LENGTH),
        ("past frame end", pixels_packet(0, size - 4, bytes(8)), {}, ErrorCode.LENGTH),
        ("wrong offset", pixels_packet(0, 8, bytes(8)), {}, ErrorCode.POSITION),
        ("wrong frame", pixels_packet(1, 0, bytes(8)), {}, ErrorCode.POSITION),
        ("bad escape", bytes((END, Command.INFO, ESC, 0x01, END)), {}, ErrorCode.FRAMING),
        ("stop bit low", encode_packet(Command.INFO), {"framing_error_at": 1},
         ErrorCode.FRAMING),
        ("bytes lost", encode_packet(Command.INFO), {"overrun_at": 2}, ErrorCode.OVERRUN),
        ("shift out of range", encode_packet(Command.CONFIG, bytes((1, 0, 32, 0))), {},
         ErrorCode.VALUE),
        ("dense out of range", encode_packet(Command.CONFIG, bytes((1, 2, 3, 0))), {},
         ErrorCode.VALUE),
        ("WEIGHTS past its memory", weights_packet(0, sizes[0] - 3, bytes(4)), {},
         ErrorCode.LENGTH),
        ("WEIGHTS to no memory", weights_packet(len(sizes), 0, bytes(1)), {},
         ErrorCode.LENGTH),
        ("WEIGHTS above chunk", weights_packet(0, 0, bytes(9)), {}, ErrorCode.LENGTH),
        ("WEIGHTS without bytes", weights_packet(0, 0, b""), {}, ErrorCode.LENGTH),
    ]


CONFIG_2 = layer(h=4, w=4, cin=1, cout=2, ppc=2)


@pytest.mark.parametrize("name,packet,options,code",
                         bad_packets(CONFIG_2), ids=[b[0] for b in bad_packets(CONFIG_2)])
def test_bad_packet_gives_error_and_link_recovers(name, packet, options, code):
    bench = LinkBench(CONFIG_2, chunk=8, seed=len(name))

    async def body(ctx):
        bench.write(packet, **options)
        answers = await bench.wait_answers(ctx, 1)
        assert answers[0] == status(Reply.ERROR, code, 0, 0)
        assert bench.beats == [] and bench.resets == 0
        # No reset: the next good packets are taken as if nothing had happened.
        bench.write(pixels_packet(0, 0, bytes(range(8))))
        bench.write(encode_packet(Command.SYNC, b"\x2a"))
        answers = await bench.wait_answers(ctx, 3)
        assert answers[1:] == [status(Reply.ACK, Command.PIXELS, 0, 8),
                               status(Reply.SYNC, 0x2A, 0, 8)]
        assert [s for beat in bench.beats for s in beat[0]] == list(range(8))

    bench.run(bench.script(body))


@pytest.mark.parametrize("idle,stall", stall_profiles())
@pytest.mark.parametrize("ram_read_register", [False, True])
def test_weights_go_to_the_upload_port_and_leave_the_frame_position(ram_read_register, idle,
                                                                    stall):
    """WEIGHTS bytes come out on ``upload`` in order, each packet acknowledged with its memory
    and end address; any count up to the chunk (not only multiples of pixels_per_cycle), and
    PIXELS go on from where they were."""
    config = CONFIG_2
    bench = LinkBench(config, chunk=8, stall=stall, idle=idle, seed=3,
                      ram_read_register=ram_read_register)
    images = upload_images(config.replace(weights=(-np.array(config.weights)).tolist()))
    packets = [(number, start, image[start:start + 5])
               for number, image in enumerate(images) for start in range(0, len(image), 5)]

    async def body(ctx):
        bench.write(pixels_packet(0, 0, bytes(range(8))))
        for index, (number, start, part) in enumerate(packets):
            bench.write(weights_packet(number, start, part))
            # Within the window of 2: wait for the ACK of the packet before this one.
            await bench.wait_until(ctx, lambda index=index: len(bench.answers) >= index + 1)
        bench.write(pixels_packet(0, 8, bytes(range(8, 16))))
        answers = await bench.wait_answers(ctx, len(packets) + 2, limit=100_000)
        assert answers[0] == status(Reply.ACK, Command.PIXELS, 0, 8)
        assert answers[1:-1] == [status(Reply.ACK, Command.WEIGHTS, n, s + len(part))
                                 for n, s, part in packets]
        assert answers[-1] == status(Reply.ACK, Command.PIXELS, 1, 0)   # the frame is 16
        expected = [(n, s + i, b) for n, s, part in packets for i, b in enumerate(part)]
        assert bench.uploads == expected
        assert [s for beat in bench.beats for s in beat[0]] == list(range(16))

    bench.run(bench.script(body))


def test_a_link_without_uploads_refuses_weights_and_reports_no_shape():
    bench = LinkBench(CONFIG_2, chunk=8, uploads=False)

    async def body(ctx):
        bench.write(encode_packet(Command.INFO))
        bench.write(weights_packet(0, 0, bytes(4)))
        answers = await bench.wait_answers(ctx, 2)
        assert answers[0][1].shape == 0
        assert answers[1] == status(Reply.ERROR, ErrorCode.COMMAND, 0, 0)
        assert bench.uploads == []

    bench.run(bench.script(body))


def test_truncated_packet_times_out_then_link_recovers():
    bench = LinkBench(CONFIG_2, chunk=8, timeout=200)

    async def body(ctx):
        packet = pixels_packet(0, 0, bytes(range(8)))
        bench.write(packet[:9])
        await ctx.tick().repeat(150)
        assert bench.answers == []            # not yet: bytes may still come
        answers = await bench.wait_answers(ctx, 1)
        assert answers[0] == status(Reply.ERROR, ErrorCode.TIMEOUT, 0, 0)
        bench.write(packet)
        answers = await bench.wait_answers(ctx, 2)
        assert answers[1] == status(Reply.ACK, Command.PIXELS, 0, 8)

    bench.run(bench.script(body))


def test_truncated_packet_running_into_the_next_is_refused():
    bench = LinkBench(CONFIG_2, chunk=8)

    async def body(ctx):
        packet = pixels_packet(0, 0, bytes(range(8)))
        # A cut packet, and the next one's leading END lost: the two merge into one, refused.
        bench.write(packet[:9] + packet[1:])
        await bench.wait_answers(ctx, 1)
        # With its leading END, a packet after a cut one is taken (the cut one is refused).
        bench.write(packet[:9] + packet)
        answers = await bench.wait_answers(ctx, 3)
        assert answers == [status(Reply.ERROR, ErrorCode.CRC, 0, 0),
                           status(Reply.ERROR, ErrorCode.CRC, 0, 0),
                           status(Reply.ACK, Command.PIXELS, 0, 8)]
        assert [s for beat in bench.beats for s in beat[0]] == list(range(8))

    bench.run(bench.script(body))


def test_window_full_is_busy_and_sync_waits_for_the_engine():
    bench = LinkBench(CONFIG_2, chunk=8)
    bench.engine_ready = False

    async def body(ctx):
        for offset in (0, 8):
            bench.write(pixels_packet(0, offset, bytes(range(offset, offset + 8))))
        bench.write(pixels_packet(1, 0, bytes(8)))
        answers = await bench.wait_answers(ctx, 1)
        assert answers == [status(Reply.ERROR, ErrorCode.BUSY, 1, 0)]
        bench.write(encode_packet(Command.SYNC, b"\x07"))
        await ctx.tick().repeat(500)
        assert len(bench.answers) == 1        # SYNC waits: the slots are still full
        bench.engine_ready = True
        answers = await bench.wait_answers(ctx, 4)
        assert answers[1:] == [status(Reply.ACK, Command.PIXELS, 0, 8),
                               status(Reply.ACK, Command.PIXELS, 1, 0),
                               status(Reply.SYNC, 7, 1, 0)]

    bench.run(bench.script(body))


def test_config_resets_position_frame_numbers_and_drops_pending_output():
    bench = LinkBench(CONFIG_2, chunk=8)

    async def body(ctx):
        bench.write(pixels_packet(0, 0, bytes(8)))
        await bench.wait_answers(ctx, 1)
        bench.engine_out.append({"end_of_frame": 1, "figures": {"frame_events_in": 1}})
        answers = await bench.wait_answers(ctx, 2)
        assert answers[1][0] == Reply.END_OF_FRAME and answers[1][1]["frame"] == 0
        # The host stops reading: events pile up in the transmitter and the engine.
        bench.sink_ready = False
        bench.engine_out.extend([{"channel": 1, "delta": d} for d in range(1, 6)])
        await ctx.tick().repeat(300)
        bench.write(encode_packet(Command.CONFIG, bytes((0, 0, 0, 0))))
        await ctx.tick().repeat(300)
        bench.sink_ready = True
        await bench.wait_until(ctx, lambda: bench.answers[-1][0] == Reply.ACK)
        answers = bench.answers
        assert answers[-1] == status(Reply.ACK, Command.CONFIG, 0, 0)
        sent = [a[1]["delta"] for a in answers[2:-1]]
        assert 1 <= len(sent) < 5 and sent == list(range(1, len(sent) + 1))
        count = len(answers)
        bench.write(pixels_packet(0, 0, bytes(8)))  # position is back at (0, 0)
        answers = await bench.wait_answers(ctx, count + 1)
        assert answers[count] == status(Reply.ACK, Command.PIXELS, 0, 8)
        bench.engine_out.append({"end_of_frame": 1, "figures": {"frame_events_in": 2}})
        answers = await bench.wait_answers(ctx, count + 2)
        assert answers[count + 1][0] == Reply.END_OF_FRAME
        assert answers[count + 1][1]["frame"] == 0
        await ctx.tick().repeat(300)
        assert len(bench.answers) == count + 2   # the rest of the events were dropped

    bench.run(bench.script(body))


@pytest.mark.filterwarnings("ignore:.*created but never used")
@pytest.mark.parametrize("kwargs,error,message", [
    ({"config": {}}, TypeError, r"config must be an eventconv.core.config.Config, not \{\}"),
    ({"chunk": 12}, ValueError, r"chunk must be a power of two in 8..4096, not 12"),
    ({"chunk": 8192}, ValueError, r"chunk must be an integer in 8..4096, not 8192"),
    ({"chunk": 8.0}, TypeError, r"chunk must be an integer in 8..4096, not 8.0"),
    ({"window": 3}, ValueError, r"window must be one of 1, 2, 4, not 3"),
    ({"timeout_cycles": 15}, ValueError, r"timeout_cycles must be an integer in 16..\d+, "
                                         r"not 15"),
    ({"clock_frequency": -1}, ValueError, r"clock_frequency must be an integer in 0..\d+"),
    ({"target": "ecp5"}, TypeError,
     r"target must be an eventconv.hw.target.Target \(one of generic, ice40, ecp5\), "
     r"not 'ecp5'"),
])
def test_parameter_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        HostLink(**{"config": CONFIG_2, **kwargs})


def three_layers():
    """A network whose CONFIG (8 fields) runs past the PIXELS header's 7 bytes."""
    rng = np.random.default_rng(5)
    layers, cin = [], 1
    for cout, pool in ((2, 2), (3, 1), (2, 1)):
        layers.append({"channels_out": cout, "kernel_size": 3, "pool": pool, "shift": 3,
                       "weights": rng.integers(-128, 128, (cout, cin, 3, 3)).tolist(),
                       "bias": rng.integers(-100, 100, cout).tolist()})
        cin = cout
    return Network.from_dict({"height": 6, "width": 6, "channels_in": 1, "threshold": 7,
                              "layers": layers})


def test_a_network_gets_each_layers_knobs_and_gives_each_layers_figures():
    net = three_layers()
    bench = LinkBench(net, chunk=8)
    figures = {"frame_events_in": [5, 6, 7], "frame_macs": [100, 200, 0xFFFFFFFF],
               "frame_events_out": [8, 9, 3], "frame_cycles": 4321}

    async def body(ctx):
        bench.write(encode_packet(Command.INFO))
        (_, info), = await bench.wait_answers(ctx, 1)
        assert (info.layers, info.channels_out, info.digest) == (3, 2, config_digest(net))
        bench.write(encode_packet(Command.CONFIG, bytes((1, 0, 31, 0, 5, 4))))
        assert (await bench.wait_answers(ctx, 2))[1] == status(Reply.ERROR, ErrorCode.LENGTH,
                                                                0, 0)
        bench.write(encode_packet(Command.CONFIG, bytes((1, 0, 31, 0, 5, 4, 32, 9))))
        assert (await bench.wait_answers(ctx, 3))[2] == status(Reply.ERROR, ErrorCode.VALUE,
                                                                0, 0)
        bench.write(encode_packet(Command.CONFIG, bytes((9, 1, 31, 250, 5, 4, 2, 9))))
        assert (await bench.wait_answers(ctx, 4))[3] == status(Reply.ACK, Command.CONFIG, 0, 0)
        assert (ctx.get(bench.dut.threshold), ctx.get(bench.dut.dense)) == (9, 1)
        assert [ctx.get(bench.dut.shift[i]) for i in range(3)] == [31, 5, 2]
        assert [ctx.get(bench.dut.output_threshold[i]) for i in range(3)] == [250, 4, 9]
        bench.engine_out.append({"channel": 1, "y": 1, "x": 0, "delta": -3})
        bench.engine_out.append({"end_of_frame": 1, "figures": figures})
        answers = await bench.wait_answers(ctx, 6)
        assert answers[4] == (Reply.EVENT, {"channel": 1, "y": 1, "x": 0, "delta": -3})
        assert answers[5] == (Reply.END_OF_FRAME, {
            "frame": 0, "events_in": (5, 6, 7), "macs": (100, 200, 0xFFFFFFFF),
            "events_out": (8, 9, 3), "cycles": 4321})

    bench.run(bench.script(body))
