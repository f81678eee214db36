"""The host link: the board's side of the protocol (:mod:`eventconv.protocol`, whose package
docstring specifies it), between the UART byte streams and the engine."""

from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from eventconv.core import ranges
from eventconv.hw.layouts import EventStream, PixelStream, UploadSignature, event_layout
from eventconv.hw.link.encoder import PacketEncoder, crc16_step
from eventconv.hw.link.feeder import SampleFeeder
from eventconv.hw.link.parser import PacketParser
from eventconv.hw.link.slip import SlipReceiver
from eventconv.hw.link.slots import SlotBuffer
from eventconv.hw.link.transmitter import PacketTransmitter
from eventconv.hw.link.uart import received_layout
from eventconv.hw.target import GENERIC, checked_target
from eventconv.protocol.codec import as_network, config_digest
from eventconv.protocol.constants import (
    FIGURE_WIDTH,
    INFO_BYTES,
    MAX_CHUNK,
    OFFSET_WIDTH,
    PROTOCOL_VERSION,
    Reply,
)
from eventconv.protocol.upload import shape_digest

__all__ = ["HostLink", "crc16_step", "PacketEncoder"]


class HostLink(wiring.Component):
    """The protocol (:mod:`eventconv.protocol`) between UART bytes and one engine.

    Its parts: received bytes go through the
    :class:`~eventconv.hw.link.slip.SlipReceiver` (SLIP decoding) into the
    :class:`~eventconv.hw.link.parser.PacketParser`, which checks each packet and acts on it:
    it answers, applies CONFIG, or commits a PIXELS (or WEIGHTS) packet, whose samples it wrote
    into a slot of the :class:`~eventconv.hw.link.slots.SlotBuffer`, to the
    :class:`~eventconv.hw.link.feeder.SampleFeeder`. The feeder gives the slot's samples to the
    engine (a WEIGHTS packet's bytes to ``upload``) and then queues its ACK. The
    :class:`~eventconv.hw.link.transmitter.PacketTransmitter` sends the parser's answers, the
    feeder's ACKs and the engine's output, one packet body at a time, through the
    :class:`~eventconv.hw.link.encoder.PacketEncoder` (CRC, SLIP) to ``send``.

    Parameters
    ----------
    config : :class:`eventconv.core.config.Config` or :class:`eventconv.core.network.Network`
        The engine's network; its knobs (threshold, mode, each layer's shift and
        output_threshold) are their values after reset.
    chunk : int
        Most samples in one PIXELS packet: a power of two in 8..4096, at least
        ``pixels_per_cycle``. The buffer is ``window * chunk`` bytes of block RAM.
    window : int
        Buffer slots: 1, 2 or 4.
    timeout_cycles : int
        Cycles without a byte after which an unfinished packet is dropped (TIMEOUT), >= 16.
    clock_frequency : int
        Reported in INFO (Hz), 0..2**32-1.
    uploads : bool
        WEIGHTS packets are taken (``upload``) and INFO gives the shape digest; without,
        WEIGHTS is an unknown type (COMMAND) and INFO's shape is 0.
    target : :class:`~eventconv.hw.target.Target`
        With ``ram_read_register`` the buffer's read data goes into a register that feeds nothing
        else, a cycle before it is used (samples then take three cycles each): on the ECP5 the block
        RAM's own output register (:mod:`eventconv.flow.ecp5_outreg`). No read meets a write of its
        word (a slot is written only while it is free and read only while it is full), so the RAM
        has no read-during-write logic either.

    Members
    -------
    received : ``In(stream.Signature(received_layout()))``
        Bytes from the UART receiver (through a FIFO: the link stops taking bytes for a few
        cycles at each packet end, and for a packet's time when answers queue up).
    send : ``Out(stream.Signature(8))``
        Bytes for the UART transmitter.
    pixels : ``Out(PixelStream(pixels_per_cycle))``
        To the engine: two cycles per sample (three with ``target.ram_read_register``) plus one per
        beat.
    upload : ``Out(UploadSignature())``
        WEIGHTS packets' bytes, to an engine built for uploads
        (:mod:`eventconv.protocol.upload`).
    events : ``In(EventStream(C, H', W'))``
        From the engine (its last layer's output shape).
    threshold : ``Out(8)``, dense : ``Out(1)``, shift : ``Out(5)`` and output_threshold :
    ``Out(8)`` per layer
        The engine's runtime knobs, set by CONFIG (per layer as the engine's ports: plain for
        one layer, an ``ArrayLayout`` for a network).
    engine_reset : ``Out(1)``
        One-cycle pulse (registered) on CONFIG: reset the engine (its clear sequence
        follows).
    frame_events_in, frame_macs, frame_events_out : ``In(32)`` per layer, frame_cycles :
    ``In(32)``
        The engine's figures (zero-extended).
    error : ``Out(1)``
        One-cycle pulse per ERROR answer (for a LED).

    Latency and throughput: a packet is checked in 6 cycles after its END; samples go to the
    engine at two cycles each plus one per beat; answers leave at one byte per two cycles at
    most (the UART is the bottleneck by far: 10 bit times per byte).

    Raises
    ------
    TypeError, ValueError
        A parameter out of range, or a frame of 2**24 samples or more.
    """

    def __init__(self, *, config, chunk=256, window=2, timeout_cycles=1_000_000,
                 clock_frequency=0, target=GENERIC, uploads=True):
        self.network = network = as_network(config)
        config = network.first
        self.layers = layers = len(network.layers)
        chunk = ranges.integer("chunk", chunk, 8, MAX_CHUNK)
        if chunk & (chunk - 1) or chunk < config.pixels_per_cycle:
            raise ranges.ConfigError(f"chunk must be a power of two in "
                                     f"{max(8, config.pixels_per_cycle)}..{MAX_CHUNK}, "
                                     f"not {chunk!r}")
        window = ranges.one_of("window", window, (1, 2, 4))
        timeout_cycles = ranges.integer("timeout_cycles", timeout_cycles, 16, 2**32 - 1)
        clock_frequency = ranges.integer("clock_frequency", clock_frequency, 0, 2**32 - 1)
        self.target = checked_target(target)
        self.uploads = bool(uploads)
        self.frame_size = config.height * config.width * config.channels_in
        if self.frame_size >= 2**OFFSET_WIDTH:
            raise ranges.ConfigError(f"frame size H * W * Cin must be below 2**24, "
                                     f"not {self.frame_size}")
        self.config = config
        self.chunk, self.window = chunk, window
        self.timeout_cycles, self.clock_frequency = timeout_cycles, clock_frequency
        self.output_shape = network.output_shape
        self.event_layout = event_layout(*self.output_shape)
        self.event_bytes = (self.event_layout["end_of_frame"].offset + 7) // 8

        def per_layer(width):
            return width if layers == 1 else data.ArrayLayout(width, layers)

        def init(values):
            return values[0] if layers == 1 else values

        super().__init__({
            "received": In(stream.Signature(received_layout())),
            "send": Out(stream.Signature(8)),
            "pixels": Out(PixelStream(config.pixels_per_cycle)),
            "upload": Out(UploadSignature()),
            "events": In(EventStream(*self.output_shape)),
            "threshold": Out(8, init=config.threshold),
            "dense": Out(1, init=int(config.mode == "dense")),
            "shift": Out(per_layer(5), init=init([c.shift for c in network.layers])),
            "output_threshold": Out(per_layer(8), init=init(
                [c.output_threshold for c in network.layers])),
            "engine_reset": Out(1),
            "frame_events_in": In(per_layer(FIGURE_WIDTH)),
            "frame_macs": In(per_layer(FIGURE_WIDTH)),
            "frame_events_out": In(per_layer(FIGURE_WIDTH)),
            "frame_cycles": In(FIGURE_WIDTH),
            "error": Out(1),
        })

    def _info_bytes(self):
        c = self.config
        fields = [(PROTOCOL_VERSION, 1), (config_digest(self.network), 4), (c.height, 2),
                  (c.width, 2), (c.channels_in, 2), (self.output_shape[0], 2),
                  (c.kernel_size, 1), (c.pixels_per_cycle, 1), (self.chunk, 2),
                  (self.window, 1), (self.clock_frequency, 4), (self.layers, 1),
                  (shape_digest(self.network) if self.uploads else 0, 4)]
        out = [Reply.INFO]
        for value, size in fields:
            out += list(value.to_bytes(size, "little"))
        assert len(out) == INFO_BYTES
        return out

    def elaborate(self, platform):
        m = Module()
        c = self.config
        m.submodules.slip = slip = SlipReceiver()
        m.submodules.parser = parser = PacketParser(self.network, chunk=self.chunk,
                                                    timeout_cycles=self.timeout_cycles,
                                                    uploads=self.uploads)
        m.submodules.slots = slots = SlotBuffer(chunk=self.chunk, window=self.window,
                                                target=self.target)
        m.submodules.feeder = feeder = SampleFeeder(
            pixels_per_cycle=c.pixels_per_cycle, chunk=self.chunk, frame_size=self.frame_size,
            target=self.target)
        m.submodules.transmitter = transmitter = PacketTransmitter(
            info=self._info_bytes(), output_shape=self.output_shape, layers=self.layers)
        m.submodules.encoder = encoder = PacketEncoder()

        # Bytes in: SLIP decoding, the parser, the buffer's slots, the feeder, the engine.
        wiring.connect(m, wiring.flipped(self.received), slip.received)
        wiring.connect(m, slip.items, parser.items)
        wiring.connect(m, parser.buffer, slots.write)
        wiring.connect(m, feeder.buffer, slots.read)
        wiring.connect(m, feeder.pixels, wiring.flipped(self.pixels))
        wiring.connect(m, feeder.upload, wiring.flipped(self.upload))
        m.d.comb += [parser.escaping.eq(slip.escaping), slip.drop.eq(parser.timed_out),
                     parser.quiet.eq(feeder.quiet)]

        # Bytes out: answers, ACKs and the engine's output, the transmitter, the encoder.
        wiring.connect(m, parser.reply, transmitter.reply)
        wiring.connect(m, feeder.ack, transmitter.ack)
        wiring.connect(m, wiring.flipped(self.events), transmitter.events)
        wiring.connect(m, transmitter.body, encoder.body)
        wiring.connect(m, encoder.send, wiring.flipped(self.send))
        m.d.comb += [transmitter.frame_cycles.eq(self.frame_cycles)]
        for name in ("frame_events_in", "frame_macs", "frame_events_out"):
            m.d.comb += getattr(transmitter, name).eq(getattr(self, name))

        # The engine's knobs and reset, from the parser's registers.
        m.d.comb += [feeder.engine_reset.eq(parser.engine_reset),
                     transmitter.engine_reset.eq(parser.engine_reset)]
        m.d.comb += [getattr(self, name).eq(getattr(parser, name))
                     for name in ("threshold", "dense", "shift", "output_threshold",
                                  "engine_reset", "error")]
        return m
