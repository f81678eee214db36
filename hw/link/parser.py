"""The host link's parser: a received packet's items into its type, header and samples, its
checks in the order of :mod:`eventconv.protocol` (whose package docstring specifies them), and
what it does: an answer, CONFIG's knobs and engine reset, or a PIXELS or WEIGHTS packet's slot
committed to the feeder."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from eventconv.core.ranges import ConfigError
from eventconv.hw.link.encoder import crc16_step
from eventconv.hw.link.slip import item_layout
from eventconv.hw.link.slots import SlotWriteSignature
from eventconv.hw.link.transmitter import reply_layout, status_layout
from eventconv.protocol.codec import as_network
from eventconv.protocol.constants import (
    COUNT_WIDTH,
    CRC_INIT,
    FRAME_WIDTH,
    OFFSET_WIDTH,
    PIXELS_HEADER_BYTES,
    Command,
    ErrorCode,
    Reply,
    config_bytes,
)
from eventconv.protocol.upload import upload_memories

__all__ = ["PacketParser"]

# The parser's states, one hot: a flip-flop per state, so no state decode sits in front of the
# decisions (Yosys keeps an Amaranth FSM's binary encoding).
_STATES = ("receive", "sum", "compare", "check", "decide", "act", "do", "restart")


class _Packet:
    """The parser's registers: the packet being received, its checks and the decision, the
    expected position and the state flip-flops."""

    def __init__(self, *, chunk, timeout_cycles, layers):
        self.max_index = PIXELS_HEADER_BYTES + chunk + 2 + 1
        self.index = Signal(range(self.max_index + 1))
        self.crc = Signal(16, init=CRC_INIT)
        self.kind = Signal(8)
        self.header = Array(Signal(8, name=f"header_{i}")
                            for i in range(PIXELS_HEADER_BYTES - 1))
        self.bad_framing = Signal()
        self.bad_overrun = Signal()
        self.slot_was_free = Signal()
        self.idle_count = Signal(range(timeout_cycles + 1))
        self.packet_open = Signal()
        self.expired = Signal()
        self.where = Signal(PIXELS_HEADER_BYTES + 1, init=1)   # bit i: next byte is byte i
        self.sample_position = Signal(range(chunk + 1))
        self.may_write = Signal()
        # Nothing of a packet yet: no byte, no framing or overrun flag (so an END now ends an
        # empty packet). A register, not a compare of ``index``.
        self.nothing_yet = Signal(init=1)
        self.kind_is = {c: Signal(name=f"kind_is_{c.name.lower()}") for c in Command}
        self.index_fits = {c: Signal(name=f"index_fits_{c.name.lower()}") for c in Command}
        self.index_is_short = Signal()

        self.code = Signal(8)
        self.end_offset = Signal(OFFSET_WIDTH + 1)
        self.samples_sent = Signal(COUNT_WIDTH)
        self.frame_done = Signal()
        self.flag = {n: Signal(name=f"flag_{n}")
                     for n in ("short", "crc", "command", "length", "count", "past_end",
                               "position", "busy", "value", "past_memory")}
        # WEIGHTS: the size of the memory it names (0: no such memory).
        self.memory_size = Signal(OFFSET_WIDTH + 1)
        self.position_bytes = Signal(5)
        self.act = {n: Signal(name=f"act_{n}")
                    for n in ("error", "info", "sync", "config", "commit", "weights",
                              "waits", "waits_quiet")}
        self.next_frame = Signal(FRAME_WIDTH)
        self.next_offset = Signal(OFFSET_WIDTH)

        # Expected position of the next PIXELS packet.
        self.expected_frame = Signal(FRAME_WIDTH)
        self.expected_offset = Signal(OFFSET_WIDTH)
        self.expected = Cat(self.expected_frame, self.expected_offset)

        self.state = {name: Signal(name=f"parser_{name}", init=name == "receive")
                      for name in _STATES}

        header = self.header
        self.memory_field = Cat(header[0], header[1])
        self.offset_field = Cat(header[2], header[3], header[4])
        self.count_field = Cat(header[5], header[6])
        # CONFIG's fields past the header's bytes (more than two layers) arrive where a PIXELS
        # packet's samples do, and are captured by their sample position.
        self.config_extra = [Signal(8, name=f"config_{i}")
                             for i in range(config_bytes(layers) - 1 - len(header))]
        fields = [*header, *self.config_extra][:config_bytes(layers) - 1]
        self.threshold_field, self.dense_field = fields[0], fields[1]
        self.shift_fields = fields[2::2]
        self.output_threshold_fields = fields[3::2]

    def goto(self, m, source, target):
        """From state ``source`` to ``target`` on the next cycle (while in ``source``)."""
        m.d.sync += [self.state[source].eq(0), self.state[target].eq(1)]

    def restart(self, m):
        """Clear the packet's registers for the next packet."""
        m.d.sync += [self.where.eq(1), self.sample_position.eq(0), self.nothing_yet.eq(1)]
        m.d.sync += [self.index.eq(0), self.crc.eq(CRC_INIT), self.bad_framing.eq(0),
                     self.bad_overrun.eq(0), self.idle_count.eq(0), self.packet_open.eq(0),
                     self.expired.eq(0)]


class PacketParser(wiring.Component):
    """Receives a packet, checks it and acts on it, one packet at a time.

    States (one flip-flop each): ``receive`` takes items into the packet's registers (a
    PIXELS packet's samples straight into the buffer's write slot, if it was free when the
    packet began) until an END ends a non-empty packet, or the packet times out; ``sum``,
    ``compare`` and ``check`` work out the error code in three registered steps, ``decide``
    registers one-hot decisions; ``act`` waits until the answer may go, ``do`` acts, and
    ``restart`` clears the packet's registers for the next one.

    Parameters
    ----------
    config : :class:`eventconv.core.config.Config` or :class:`eventconv.core.network.Network`
        The engine's network: its input frame size and ``pixels_per_cycle`` (the PIXELS
        checks), its layer count (CONFIG's length) and knobs (their values after reset).
    chunk : int
        Most samples in one PIXELS packet (a power of two; the buffer's slot size).
    timeout_cycles : int
        Cycles without a byte after which an unfinished packet is dropped (TIMEOUT), >= 16.
    uploads : bool
        WEIGHTS packets are taken (else WEIGHTS is an unknown type: COMMAND).

    Members
    -------
    items : ``In(stream.Signature(item_layout()))``
        From the :class:`~eventconv.hw.link.slip.SlipReceiver`; ``ready`` in ``receive``.
    escaping : ``In(1)``
        The SLIP decoder holds an ESC: a packet is open (for the timeout).
    timed_out : ``Out(1)``
        Pulse: the packet timed out, the SLIP decoder drops its ESC.
    buffer : ``Out(SlotWriteSignature(chunk))``
        To the buffer's write side: the samples, then the slot committed to the feeder with
        the packet's count and the position after it.
    quiet : ``In(1)``
        From the :class:`~eventconv.hw.link.feeder.SampleFeeder`: every PIXELS packet taken
        is in the engine and acknowledged. SYNC and CONFIG wait for it.
    reply : ``Out(stream.Signature(reply_layout()))``
        The answer (registered) for the transmitter: every packet but a good PIXELS is
        answered; the next answer waits until this one is taken. ``valid`` is cleared on
        ``ready`` alone (the transmitter's ``ready`` comes only with ``valid``).
    threshold : ``Out(8)``, dense : ``Out(1)``, shift : ``Out(5)`` per layer,
    output_threshold : ``Out(8)`` per layer
        The engine's runtime knobs (registered), set by CONFIG; the per-layer ones are
        plain for one layer, ``ArrayLayout`` for a network, as the engine's ports.
    engine_reset : ``Out(1)``
        One-cycle pulse (registered), the cycle after CONFIG acts.
    error : ``Out(1)``
        One-cycle pulse (registered) per ERROR answer.

    Latency: a packet acts 6 cycles after the cycle its END is taken (later while its answer
    waits for ``reply`` or ``quiet``), and ``receive`` takes items again 2 cycles after that.
    Throughput: an item per cycle in ``receive``.
    """

    def __init__(self, config, *, chunk, timeout_cycles, uploads=True):
        self.network = network = as_network(config)
        self.config = config = network.first
        self.layers = len(network.layers)
        if config_bytes(self.layers) - 1 - (PIXELS_HEADER_BYTES - 1) > chunk:
            raise ConfigError(f"chunk must be at least the CONFIG fields past the PIXELS "
                              f"header ({config_bytes(self.layers) - PIXELS_HEADER_BYTES}), "
                              f"not {chunk!r}")
        self.chunk, self.timeout_cycles = chunk, timeout_cycles
        self.frame_size = config.height * config.width * config.channels_in
        self.uploads = bool(uploads)
        # WEIGHTS: the size of each memory.
        self.memory_sizes = [memory.size for memory in upload_memories(network)] \
            if uploads else []
        super().__init__({
            "items": In(stream.Signature(item_layout())),
            "escaping": In(1),
            "timed_out": Out(1),
            "buffer": Out(SlotWriteSignature(chunk)),
            "quiet": In(1),
            "reply": Out(stream.Signature(reply_layout())),
            "threshold": Out(8, init=config.threshold),
            "dense": Out(1, init=int(config.mode == "dense")),
            "shift": Out(self.per_layer(5), init=self._init([c.shift for c in network.layers])),
            "output_threshold": Out(self.per_layer(8), init=self._init(
                [c.output_threshold for c in network.layers])),
            "engine_reset": Out(1),
            "error": Out(1),
        })

    def _is_weights(self, kind, p=None):
        """A WEIGHTS packet (from ``kind``, or ``p``'s registered decode); never without
        uploads, where WEIGHTS is an unknown type (COMMAND) and no WEIGHTS logic is built."""
        if not self.uploads:
            return Const(0, 1)
        return p.kind_is[Command.WEIGHTS] if p is not None else kind == Command.WEIGHTS

    def per_layer(self, width):
        """A knob's shape: plain for one layer, an element per layer for a network (as the
        engine's ports)."""
        return width if self.layers == 1 else data.ArrayLayout(width, self.layers)

    def _init(self, values):
        return values[0] if self.layers == 1 else values

    def element(self, member, index):
        return member if self.layers == 1 else member[index]

    def elaborate(self, platform):
        m = Module()
        packet = _Packet(chunk=self.chunk, timeout_cycles=self.timeout_cycles,
                         layers=self.layers)
        self._receive(m, packet)
        self._check(m, packet)
        self._act(m, packet)
        return m

    def _receive(self, m, p):
        """The ``receive`` state, and the registered decodes of the packet so far."""
        chunk = self.chunk
        item = self.items.payload
        value = Signal(8)
        is_data = Signal()
        m.d.comb += value.eq(item.data)
        # The timeout needs no precision: its compares are registered.
        m.d.sync += [p.packet_open.eq((p.index != 0) | self.escaping),
                     p.expired.eq(p.idle_count >= self.timeout_cycles - 2)]
        m.d.sync += p.may_write.eq(((p.kind == Command.PIXELS) | self._is_weights(p.kind))
                                   & p.slot_was_free)

        # Decodes kept registered all the time: by the time a packet is checked (two cycles
        # after its last byte at the earliest) they describe it.
        sizes = {Command.INFO: 3, Command.CONFIG: config_bytes(self.layers) + 2,
                 Command.SYNC: 4}
        m.d.sync += [p.kind_is[c].eq(p.kind == c) for c in Command]
        m.d.sync += [p.index_fits[c].eq(p.index == size) for c, size in sizes.items()]
        m.d.sync += [p.index_fits[Command.PIXELS].eq(p.index >= PIXELS_HEADER_BYTES + 2),
                     p.index_fits[Command.WEIGHTS].eq(p.index >= PIXELS_HEADER_BYTES + 2),
                     p.index_is_short.eq(p.index < 3)]

        with m.If(p.state["receive"]):
            m.d.comb += self.items.ready.eq(1)
            with m.If(self.items.valid):
                m.d.sync += p.idle_count.eq(0)
                with m.If(item.framing):
                    m.d.sync += p.bad_framing.eq(1)
                with m.If(item.overrun):
                    m.d.sync += p.bad_overrun.eq(1)
                with m.If(~item.end | item.framing | item.overrun):
                    m.d.sync += p.nothing_yet.eq(0)
                with m.If(item.end):
                    empty = p.nothing_yet & ~item.framing & ~item.overrun
                    with m.If(~empty):
                        p.goto(m, "receive", "sum")
                with m.Else():
                    m.d.comb += is_data.eq(1)
            with m.Elif(p.packet_open):
                m.d.sync += p.idle_count.eq(p.idle_count + 1)
                with m.If(p.expired):
                    m.d.comb += self.timed_out.eq(1)
                    m.d.sync += p.code.eq(ErrorCode.TIMEOUT)
                    p.goto(m, "receive", "decide")

            with m.If(is_data):
                m.d.sync += p.crc.eq(crc16_step(p.crc, value))
                with m.If(p.index != p.max_index):
                    m.d.sync += p.index.eq(p.index + 1)
                # One-hot byte position: no wide compares on the capture enables.
                m.d.sync += p.where.eq(Cat(Const(0, 1), p.where[:-1]) |
                                       (p.where[-1] << (len(p.where) - 1)))
                with m.If(p.where[0]):
                    m.d.sync += [p.kind.eq(value), p.slot_was_free.eq(self.buffer.free)]
                for i in range(PIXELS_HEADER_BYTES - 1):
                    with m.If(p.where[i + 1]):
                        m.d.sync += p.header[i].eq(value)
                with m.If(p.where[-1] & (p.sample_position != chunk)):
                    m.d.sync += p.sample_position.eq(p.sample_position + 1)
                for i, extra in enumerate(p.config_extra):
                    with m.If(p.where[-1] & (p.sample_position == i)):
                        m.d.sync += extra.eq(value)
            m.d.comb += [
                self.buffer.addr.eq(p.sample_position[:len(self.buffer.addr)]),
                self.buffer.data.eq(value),
                self.buffer.en.eq(is_data & p.where[-1] & p.may_write &
                                  (p.sample_position != chunk)),
            ]

    def _check(self, m, p):
        """The ``sum``, ``compare``, ``check`` and ``decide`` states."""
        ppc, flag, act = self.config.pixels_per_cycle, p.flag, p.act
        with m.If(p.state["sum"]):
            # The checks in three registered steps: first the sums and the plain compares.
            is_pixels = p.kind_is[Command.PIXELS]
            # WEIGHTS is checked as PIXELS but for the position (its bytes go to a memory).
            is_weights = self._is_weights(p.kind, p)
            count_bad = (p.count_field == 0) | (p.count_field > self.chunk)
            if ppc > 1:
                count_bad |= is_pixels & (p.count_field[:(ppc - 1).bit_length()] != 0)
            memory_size = Const(0, OFFSET_WIDTH + 1)
            for number, size in enumerate(self.memory_sizes):
                memory_size = Mux(p.memory_field == number, size, memory_size)
            m.d.sync += [
                p.end_offset.eq(p.offset_field + p.count_field),
                p.samples_sent.eq(p.index - (PIXELS_HEADER_BYTES + 2)),
                flag["short"].eq(p.index_is_short),
                flag["crc"].eq(p.crc != 0),
                flag["command"].eq(~p.kind_is[Command.INFO] & ~p.kind_is[Command.CONFIG] &
                                   ~p.kind_is[Command.PIXELS] & ~p.kind_is[Command.SYNC] &
                                   ~is_weights),
                p.memory_size.eq(memory_size),
                flag["length"].eq(
                    (p.kind_is[Command.INFO] & ~p.index_fits[Command.INFO]) |
                    (p.kind_is[Command.CONFIG] & ~p.index_fits[Command.CONFIG]) |
                    (p.kind_is[Command.SYNC] & ~p.index_fits[Command.SYNC]) |
                    (is_pixels & (~p.index_fits[Command.PIXELS] | count_bad)) |
                    (is_weights & (~p.index_fits[Command.WEIGHTS] | count_bad))),
                # Byte by byte: one wide compare is too deep for one cycle.
                p.position_bytes.eq(Cat(
                    p.header[i] != p.expected[8 * i:8 * i + 8] for i in range(5))),
                flag["busy"].eq((is_pixels | is_weights) & ~p.slot_was_free),
                flag["value"].eq((p.kind == Command.CONFIG) & (
                    (p.dense_field > 1) | Cat(f > 31 for f in p.shift_fields).any())),
            ]
            p.goto(m, "sum", "compare")

        with m.If(p.state["compare"]):
            # Then the compares of the sums.
            m.d.sync += [
                flag["position"].eq(p.position_bytes.any()),
                flag["count"].eq(p.samples_sent != p.count_field),
                flag["past_end"].eq(p.end_offset > self.frame_size),
                flag["past_memory"].eq(p.end_offset > p.memory_size),
                p.frame_done.eq(p.end_offset == self.frame_size),
            ]
            p.goto(m, "compare", "check")

        with m.If(p.state["check"]):
            # Last, the error code by priority.
            is_pixels, is_weights = p.kind_is[Command.PIXELS], self._is_weights(p.kind, p)
            length_bad = (flag["length"] | (is_pixels & (flag["count"] | flag["past_end"])) |
                          (is_weights & (flag["count"] | flag["past_memory"])))
            by_priority = [
                (p.bad_overrun, ErrorCode.OVERRUN), (p.bad_framing, ErrorCode.FRAMING),
                (flag["short"], ErrorCode.LENGTH), (flag["crc"], ErrorCode.CRC),
                (flag["command"], ErrorCode.COMMAND), (length_bad, ErrorCode.LENGTH),
                (is_pixels & flag["position"], ErrorCode.POSITION),
                (flag["busy"], ErrorCode.BUSY), (flag["value"], ErrorCode.VALUE),
            ]
            chosen_code = Const(0, 8)
            for condition, error in reversed(by_priority):
                chosen_code = Mux(condition, error, chosen_code)
            m.d.sync += p.code.eq(chosen_code)
            p.goto(m, "check", "decide")

        with m.If(p.state["decide"]):
            # Registered one-hot decisions keep the checks out of the acting cycle.
            good = p.code == 0
            m.d.sync += [
                act["error"].eq(p.code != 0),
                act["info"].eq(good & (p.kind == Command.INFO)),
                act["sync"].eq(good & (p.kind == Command.SYNC)),
                act["config"].eq(good & (p.kind == Command.CONFIG)),
                act["commit"].eq(good & (p.kind == Command.PIXELS)),
                act["weights"].eq(good & self._is_weights(p.kind)),
                act["waits"].eq(~(good & ((p.kind == Command.PIXELS) |
                                          self._is_weights(p.kind)))),
                act["waits_quiet"].eq(good & ((p.kind == Command.SYNC) |
                                              (p.kind == Command.CONFIG))),
                p.next_frame.eq(p.expected_frame + p.frame_done),
                p.next_offset.eq(Mux(p.frame_done, 0, p.end_offset)),
            ]
            p.goto(m, "decide", "act")

    def _act(self, m, p):
        """The ``act``, ``do`` and ``restart`` states, and the effects of ``do``."""
        act = p.act
        # The answer in three registers, not the payload's one (as in the SLIP decoder: a
        # register's enable is worked out for all its bits).
        reply_pending, reply_is_info = Signal(), Signal()
        reply = Signal(status_layout())
        m.d.comb += [self.reply.valid.eq(reply_pending),
                     self.reply.payload.info.eq(reply_is_info),
                     self.reply.payload.status.eq(reply)]
        # Answers wait for the transmitter's reply slot, SYNC and CONFIG also for quiet;
        # whether to wait is decided from four flip-flops.
        proceed = Signal()
        m.d.comb += proceed.eq(~act["waits"] |
                               (~reply_pending & (~act["waits_quiet"] | self.quiet)))
        m.d.sync += self.error.eq(0)

        # ``act`` waits until the answer may go; ``do`` acts, a cycle later, from flip-flops
        # (the reply slot and quiet cannot turn back in between: only the parser fills the
        # slot, and nothing new enters the packet slots while it waits).
        with m.If(p.state["act"]):
            with m.If(proceed):
                p.goto(m, "act", "do")
        with m.If(p.state["do"]):
            p.goto(m, "do", "restart")
        with m.If(p.state["restart"]):
            p.restart(m)
            p.goto(m, "restart", "receive")

        def answer(kind, byte, frame, offset):
            m.d.sync += [reply_pending.eq(1), reply_is_info.eq(0), reply.kind.eq(kind),
                         reply.byte.eq(byte), reply.frame.eq(frame), reply.offset.eq(offset)]

        configure = Signal()     # CONFIG acts this cycle
        with m.If(p.state["do"]):
            with m.If(act["error"]):
                answer(Reply.ERROR, p.code, p.expected_frame, p.expected_offset)
                m.d.sync += self.error.eq(1)
            with m.If(act["info"]):
                m.d.sync += [reply_pending.eq(1), reply_is_info.eq(1)]
            with m.If(act["sync"]):
                answer(Reply.SYNC, p.header[0], p.expected_frame, p.expected_offset)
            with m.If(act["config"]):
                answer(Reply.ACK, Command.CONFIG, 0, 0)
                m.d.comb += configure.eq(1)
                m.d.sync += [self.threshold.eq(p.threshold_field), self.dense.eq(p.dense_field),
                             p.expected_frame.eq(0), p.expected_offset.eq(0)]
                for i in range(self.layers):
                    m.d.sync += [self.element(self.shift, i).eq(p.shift_fields[i]),
                                 self.element(self.output_threshold, i).eq(
                                     p.output_threshold_fields[i])]
            with m.If(act["commit"]):
                # PIXELS, checked: hand the slot to the feeder.
                m.d.comb += self.buffer.commit.eq(1)
                m.d.sync += [p.expected_offset.eq(p.next_offset),
                             p.expected_frame.eq(p.next_frame)]
            with m.If(act["weights"]):
                # WEIGHTS, checked: the slot to the feeder, which writes its bytes.
                m.d.comb += self.buffer.commit.eq(1)
        weights = act["weights"]
        m.d.comb += [self.buffer.info.count.eq(p.count_field),
                     self.buffer.info.end_frame.eq(Mux(weights, p.memory_field, p.next_frame)),
                     self.buffer.info.end_offset.eq(Mux(weights, p.offset_field,
                                                        p.next_offset)),
                     self.buffer.info.weights.eq(weights)]
        with m.If(self.reply.ready):
            m.d.sync += reply_pending.eq(0)
        # Registered: the reset fans out to the whole engine.
        m.d.sync += self.engine_reset.eq(configure)
