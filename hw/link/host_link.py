"""The host link: the board's side of the protocol (:mod:`eventconv.protocol`, whose package
docstring specifies it), between the UART byte streams and the engine."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from eventconv.core import ranges
from eventconv.core.config import checked_config
from eventconv.hw.layouts import EventStream, PixelStream, event_layout
from eventconv.hw.link.uart import received_layout
from eventconv.hw.primitives.block_ram import NO_RW_CHECK, UncheckedReadPort
from eventconv.hw.target import GENERIC, checked_target
from eventconv.protocol.codec import config_digest
from eventconv.protocol.constants import (
    COUNT_WIDTH,
    CRC_INIT,
    CRC_POLY,
    END,
    ESC,
    ESC_END,
    ESC_ESC,
    FIGURE_WIDTH,
    FRAME_WIDTH,
    INFO_BYTES,
    MAX_CHUNK,
    OFFSET_WIDTH,
    PIXELS_HEADER_BYTES,
    PROTOCOL_VERSION,
    Command,
    ErrorCode,
    Reply,
)

__all__ = ["HostLink", "crc16_step", "PacketEncoder"]


def crc16_step(crc, byte):
    """The CRC-16/CCITT-FALSE register after one more byte (an Amaranth expression)."""
    for i in reversed(range(8)):
        feedback = byte[i] ^ crc[15]
        crc = Cat(Const(0, 1), crc[:15]) ^ Mux(feedback, CRC_POLY, 0)
    return crc


def _bytes_of(value, count):
    return [value[8 * i:8 * i + 8] for i in range(count)]


class PacketEncoder(wiring.Component):
    """Packet bodies to wire bytes: appends the CRC (high byte first), SLIP-escapes, ends
    each packet with END.

    Members
    -------
    body : ``In(stream.Signature(StructLayout({"data": 8, "last": 1})))``
        Body bytes; ``last`` on a packet's last byte. ``ready`` is a register.
    send : ``Out(stream.Signature(8))``
        Wire bytes (registered), one per two cycles at most.

    Every wire byte is made ready in a register a cycle or more before it is sent, with its
    escape worked out (the byte to send first and the one to send after it), so sending only
    picks one of a few registers.
    """

    body: In(stream.Signature(data.StructLayout({"data": 8, "last": 1})))
    send: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()

        def escaped(byte):
            """(first wire byte, escape needed, second wire byte) of a body byte."""
            is_end, is_escape = byte == END, byte == ESC
            return (Mux(is_end | is_escape, ESC, byte), is_end | is_escape,
                    Mux(is_end, ESC_END, ESC_ESC))

        crc = Signal(16, init=CRC_INIT)
        stage = Signal(range(4))    # 0 body, 1 CRC high, 2 CRC low, 3 END
        escape_pending = Signal()
        escape_byte = Signal(8)

        # The body byte taken, escape worked out as it is taken.
        held_valid, held_last, held_special = Signal(), Signal(), Signal()
        held_first, held_second = Signal(8), Signal(8)
        # The CRC after the held byte, worked out as it is taken (the CRC then already covers
        # every byte of its packet before it: a byte is taken only once the one before it is
        # sent; a byte taken while the last packet's CRC and END go out starts a new CRC).
        held_crc = Signal(16)
        m.d.comb += self.body.ready.eq(~held_valid)
        with m.If(self.body.valid & ~held_valid):
            first, special, second = escaped(self.body.payload.data)
            m.d.sync += [held_valid.eq(1), held_last.eq(self.body.payload.last),
                         held_crc.eq(crc16_step(Mux(stage == 0, crc, CRC_INIT),
                                                self.body.payload.data)),
                         held_first.eq(first), held_special.eq(special),
                         held_second.eq(second)]

        # The CRC bytes escaped, registered: the CRC is still for a cycle at least before
        # its bytes are sent (its last update comes with a byte sent, and the next one leaves
        # two cycles later at the earliest).
        crc_bytes = []
        for part in (crc[8:], crc[:8]):
            first, special, second = escaped(part)
            registers = Signal(8), Signal(), Signal(8)
            m.d.sync += [registers[0].eq(first), registers[1].eq(special),
                         registers[2].eq(second)]
            crc_bytes.append(registers)

        # Not "or ready": the UART takes a byte per 10 bits, and this keeps the transmitter's
        # handshake out of the paths that load and shift packets.
        free = ~self.send.valid
        with m.If(self.send.ready):
            m.d.sync += self.send.valid.eq(0)

        def emit(first, special=None, second=None):
            m.d.sync += [self.send.payload.eq(first), self.send.valid.eq(1)]
            if special is not None:
                m.d.sync += [escape_pending.eq(special), escape_byte.eq(second)]

        with m.If(free):
            with m.If(escape_pending):
                emit(escape_byte)
                m.d.sync += escape_pending.eq(0)
            with m.Elif(stage == 0):
                with m.If(held_valid):
                    emit(held_first, held_special, held_second)
                    m.d.sync += [crc.eq(held_crc), held_valid.eq(0)]
                    with m.If(held_last):
                        m.d.sync += stage.eq(1)
            with m.Elif(stage == 1):
                emit(*crc_bytes[0])
                m.d.sync += stage.eq(2)
            with m.Elif(stage == 2):
                emit(*crc_bytes[1])
                m.d.sync += stage.eq(3)
            with m.Else():
                emit(Const(END, 8))
                m.d.sync += [stage.eq(0), crc.eq(CRC_INIT)]
        return m


class HostLink(wiring.Component):
    """The protocol (:mod:`eventconv.protocol`) between UART bytes and one engine.

    Parameters
    ----------
    config : :class:`eventconv.core.config.Config`
        The engine's layer; its threshold, shift and mode are the knobs' values after reset.
    chunk : int
        Most samples in one PIXELS packet: a power of two in 8..4096, at least
        ``pixels_per_cycle``. The buffer is ``window * chunk`` bytes of block RAM.
    window : int
        Buffer slots: 1, 2 or 4.
    timeout_cycles : int
        Cycles without a byte after which an unfinished packet is dropped (TIMEOUT), >= 16.
    clock_frequency : int
        Reported in INFO (Hz), 0..2**32-1.
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
    events : ``In(EventStream(Cout, H/2, W/2))``
        From the engine.
    threshold : ``Out(8)``, shift : ``Out(5)``, dense : ``Out(1)``
        The engine's runtime knobs, set by CONFIG.
    engine_reset : ``Out(1)``
        One-cycle pulse (registered) on CONFIG: reset the engine (its clear sequence
        follows).
    frame_events_in, frame_macs, frame_events_out, frame_cycles : ``In(32)``
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
                 clock_frequency=0, target=GENERIC):
        checked_config(config)
        chunk = ranges.integer("chunk", chunk, 8, MAX_CHUNK)
        if chunk & (chunk - 1) or chunk < config.pixels_per_cycle:
            raise ranges.ConfigError(f"chunk must be a power of two in "
                                     f"{max(8, config.pixels_per_cycle)}..{MAX_CHUNK}, "
                                     f"not {chunk!r}")
        window = ranges.one_of("window", window, (1, 2, 4))
        timeout_cycles = ranges.integer("timeout_cycles", timeout_cycles, 16, 2**32 - 1)
        clock_frequency = ranges.integer("clock_frequency", clock_frequency, 0, 2**32 - 1)
        self.target = checked_target(target)
        self.frame_size = config.height * config.width * config.channels_in
        if self.frame_size >= 2**OFFSET_WIDTH:
            raise ranges.ConfigError(f"frame size H * W * Cin must be below 2**24, "
                                     f"not {self.frame_size}")
        self.config = config
        self.chunk, self.window = chunk, window
        self.timeout_cycles, self.clock_frequency = timeout_cycles, clock_frequency
        self.event_layout = event_layout(config.channels_out, config.height // 2,
                                         config.width // 2)
        self.event_bytes = (self.event_layout["end_of_frame"].offset + 7) // 8
        super().__init__({
            "received": In(stream.Signature(received_layout())),
            "send": Out(stream.Signature(8)),
            "pixels": Out(PixelStream(config.pixels_per_cycle)),
            "events": In(EventStream(config.channels_out, config.height // 2,
                                     config.width // 2)),
            "threshold": Out(8, init=config.threshold),
            "shift": Out(5, init=config.shift),
            "dense": Out(1, init=int(config.mode == "dense")),
            "engine_reset": Out(1),
            "frame_events_in": In(FIGURE_WIDTH),
            "frame_macs": In(FIGURE_WIDTH),
            "frame_events_out": In(FIGURE_WIDTH),
            "frame_cycles": In(FIGURE_WIDTH),
            "error": Out(1),
        })

    def _info_bytes(self):
        c = self.config
        fields = [(PROTOCOL_VERSION, 1), (config_digest(c), 4), (c.height, 2), (c.width, 2),
                  (c.channels_in, 2), (c.channels_out, 2), (c.kernel_size, 1),
                  (c.pixels_per_cycle, 1), (self.chunk, 2), (self.window, 1),
                  (self.clock_frequency, 4)]
        out = [Reply.INFO]
        for value, size in fields:
            out += list(value.to_bytes(size, "little"))
        assert len(out) == INFO_BYTES
        return out

    def elaborate(self, platform):
        m = Module()
        c = self.config
        ppc, chunk, window = c.pixels_per_cycle, self.chunk, self.window
        chunk_bits = (chunk - 1).bit_length()
        slot_bits = max(1, (window - 1).bit_length())

        m.submodules.encoder = encoder = PacketEncoder()
        wiring.connect(m, encoder.send, wiring.flipped(self.send))

        if not self.target.ram_read_register:
            m.submodules.buffer = buffer = Memory(shape=8, depth=window * chunk, init=[])
            write_port = buffer.write_port()
            read_port = buffer.read_port()
            buffer_word = read_port.data
        else:
            m.submodules.buffer = buffer = Memory(shape=8, depth=window * chunk, init=[],
                                                  attrs=NO_RW_CHECK)
            write_port = buffer.write_port()
            read_port = UncheckedReadPort(m, buffer, name="buffer_read")
            buffer_word = Signal(8, reset_less=True)
            m.d.sync += buffer_word.eq(read_port.data)

        # Expected position of the next PIXELS packet.
        expected_frame = Signal(FRAME_WIDTH)
        expected_offset = Signal(OFFSET_WIDTH)

        # Buffer slots: written by the parser, drained by the feeder.
        slot_full = Signal(window)
        slot_count = Array(Signal(COUNT_WIDTH, name=f"slot_count_{i}") for i in range(window))
        slot_end_frame = Array(Signal(FRAME_WIDTH, name=f"slot_end_frame_{i}")
                               for i in range(window))
        slot_end_offset = Array(Signal(OFFSET_WIDTH, name=f"slot_end_offset_{i}")
                                for i in range(window))
        write_slot = Signal(slot_bits)
        read_slot = Signal(slot_bits)

        # Answers waiting for the transmitter: the parser's and the feeder's ACK.
        status_layout = data.StructLayout({"kind": 8, "byte": 8, "frame": FRAME_WIDTH,
                                           "offset": OFFSET_WIDTH})
        reply_pending = Signal()
        reply_is_info = Signal()
        reply = Signal(status_layout)
        ack_pending = Signal()
        ack = Signal(status_layout)

        feeder_idle = Signal()
        # Registered: while the parser waits for it, it can only turn from 0 to 1 (nothing
        # new enters the slots then), so one cycle late is safe.
        quiet = Signal()
        m.d.sync += quiet.eq(~slot_full.any() & feeder_idle & ~ack_pending)
        configure = Signal()     # CONFIG taken this cycle
        commit = Signal()        # a checked PIXELS packet's slot goes to the feeder

        # ---- parser ---------------------------------------------------------------------
        max_index = PIXELS_HEADER_BYTES + chunk + 2 + 1
        index = Signal(range(max_index + 1))
        crc = Signal(16, init=CRC_INIT)
        escape = Signal()
        kind = Signal(8)
        header = Array(Signal(8, name=f"header_{i}") for i in range(PIXELS_HEADER_BYTES - 1))
        bad_framing = Signal()
        bad_overrun = Signal()
        slot_was_free = Signal()
        idle_count = Signal(range(self.timeout_cycles + 1))
        code = Signal(8)
        end_offset = Signal(OFFSET_WIDTH + 1)
        samples_sent = Signal(COUNT_WIDTH)
        frame_done = Signal()
        next_frame = Signal(FRAME_WIDTH)
        next_offset = Signal(OFFSET_WIDTH)
        (flag_short, flag_crc, flag_command, flag_length, flag_count, flag_past_end,
         flag_position, flag_busy, flag_value) = (
            Signal(name=f"flag_{n}") for n in ("short", "crc", "command", "length", "count",
                                               "past_end", "position", "busy", "value"))
        position_bytes = Signal(5)
        expected = Cat(expected_frame, expected_offset)
        act_error, act_info, act_sync, act_config, act_commit = (
            Signal(name=f"act_{n}") for n in ("error", "info", "sync", "config", "commit"))
        act_waits, act_waits_quiet = Signal(), Signal()
        # Answers wait for the transmitter's reply slot, SYNC and CONFIG also for quiet;
        # whether to wait is decided from four flip-flops.
        proceed = Signal()
        m.d.comb += proceed.eq(~act_waits | (~reply_pending & (~act_waits_quiet | quiet)))

        offset_field = Cat(header[2], header[3], header[4])
        count_field = Cat(header[5], header[6])
        threshold_field, shift_field, dense_field = header[0], header[1], header[2]

        # SLIP decoding, one registered stage ahead of the parser: a received byte becomes
        # at most one item (a body byte, or a packet end); flags of an ESC byte ride along
        # with the item that follows it.
        item_valid, item_end, item_framing, item_overrun = (
            Signal(name=f"item_{n}") for n in ("valid", "end", "framing", "overrun"))
        item_data = Signal(8)
        item_take = Signal()
        escape_framing, escape_overrun = Signal(), Signal()
        timed_out = Signal()
        # Before it, a register holds the received byte with its compares against the four
        # SLIP codes worked out, so that the decoder starts from flip-flops. It takes a byte
        # only when empty (one byte per two cycles at most, far above any UART's rate).
        byte = Signal(8)
        byte_valid = Signal()
        byte_framing, byte_overrun = Signal(), Signal()
        is_end, is_esc, is_esc_end, is_esc_esc = (
            Signal(name=f"byte_is_{n}") for n in ("end", "esc", "esc_end", "esc_esc"))
        incoming = self.received.payload.data
        m.d.comb += self.received.ready.eq(~byte_valid)
        with m.If(self.received.valid & ~byte_valid):
            m.d.sync += [byte_valid.eq(1), byte.eq(incoming),
                         byte_framing.eq(self.received.payload.framing_error),
                         byte_overrun.eq(self.received.payload.overrun),
                         is_end.eq(incoming == END), is_esc.eq(incoming == ESC),
                         is_esc_end.eq(incoming == ESC_END), is_esc_esc.eq(incoming == ESC_ESC)]
        byte_take = Signal()
        m.d.comb += byte_take.eq(byte_valid & (~item_valid | item_take))
        with m.If(byte_take):
            m.d.sync += byte_valid.eq(0)
        with m.If(item_take):
            m.d.sync += item_valid.eq(0)
        with m.If(byte_take):
            framing = byte_framing | escape_framing
            overrun = byte_overrun | escape_overrun
            m.d.sync += [item_data.eq(byte), item_end.eq(0), item_overrun.eq(overrun),
                         item_framing.eq(framing), escape_framing.eq(0), escape_overrun.eq(0)]
            with m.If(escape):
                m.d.sync += [escape.eq(0), item_valid.eq(1)]
                with m.If(is_esc_end):
                    m.d.sync += item_data.eq(END)
                with m.Elif(is_esc_esc):
                    m.d.sync += item_data.eq(ESC)
                with m.Else():
                    m.d.sync += [item_framing.eq(1), item_end.eq(is_end)]
            with m.Elif(is_end):
                m.d.sync += [item_valid.eq(1), item_end.eq(1)]
            with m.Elif(is_esc):
                m.d.sync += [escape.eq(1), escape_framing.eq(framing),
                             escape_overrun.eq(overrun)]
            with m.Else():
                m.d.sync += item_valid.eq(1)
        with m.If(timed_out):
            m.d.sync += escape.eq(0)

        value = Signal(8)
        is_data = Signal()
        m.d.comb += value.eq(item_data)
        # The timeout needs no precision: its compares are registered.
        packet_open = Signal()
        expired = Signal()
        m.d.sync += [packet_open.eq((index != 0) | escape),
                     expired.eq(idle_count >= self.timeout_cycles - 2)]

        where = Signal(PIXELS_HEADER_BYTES + 1, init=1)   # bit i: next byte is byte i
        sample_position = Signal(range(chunk + 1))
        may_write = Signal()
        m.d.sync += may_write.eq((kind == Command.PIXELS) & slot_was_free)

        # Decodes kept registered all the time: by the time a packet is checked (two cycles
        # after its last byte at the earliest) they describe it.
        kind_is = {c: Signal(name=f"kind_is_{c.name.lower()}") for c in Command}
        index_fits = {c: Signal(name=f"index_fits_{c.name.lower()}") for c in Command}
        index_is_short = Signal()
        sizes = {Command.INFO: 3, Command.CONFIG: 6, Command.SYNC: 4}
        m.d.sync += [kind_is[c].eq(kind == c) for c in Command]
        m.d.sync += [index_fits[c].eq(index == size) for c, size in sizes.items()]
        m.d.sync += [index_fits[Command.PIXELS].eq(index >= PIXELS_HEADER_BYTES + 2),
                     index_is_short.eq(index < 3)]

        # Nothing of a packet yet: no byte, no framing or overrun flag (so an END now ends an
        # empty packet). A register, not a compare of ``index``.
        nothing_yet = Signal(init=1)

        def restart():
            m.d.sync += [where.eq(1), sample_position.eq(0), nothing_yet.eq(1)]
            m.d.sync += [index.eq(0), crc.eq(CRC_INIT), bad_framing.eq(0),
                         bad_overrun.eq(0), idle_count.eq(0), packet_open.eq(0), expired.eq(0)]

        def answer(kind_, byte_, frame, offset):
            m.d.sync += [reply_pending.eq(1), reply_is_info.eq(0), reply.kind.eq(kind_),
                         reply.byte.eq(byte_), reply.frame.eq(frame), reply.offset.eq(offset)]

        m.d.sync += self.error.eq(0)
        # The parser's states, one hot: a flip-flop per state, so no state decode sits in
        # front of the decisions (Yosys keeps an Amaranth FSM's binary encoding).
        parser_states = ("receive", "sum", "compare", "check", "decide", "act", "do",
                         "restart")
        parser_in = {name: Signal(name=f"parser_{name}", init=name == "receive")
                     for name in parser_states}

        def goto(source, target):
            m.d.sync += [parser_in[source].eq(0), parser_in[target].eq(1)]

        with m.If(parser_in["receive"]):
            m.d.comb += item_take.eq(item_valid)
            with m.If(item_valid):
                m.d.sync += idle_count.eq(0)
                with m.If(item_framing):
                    m.d.sync += bad_framing.eq(1)
                with m.If(item_overrun):
                    m.d.sync += bad_overrun.eq(1)
                with m.If(~item_end | item_framing | item_overrun):
                    m.d.sync += nothing_yet.eq(0)
                with m.If(item_end):
                    empty = nothing_yet & ~item_framing & ~item_overrun
                    with m.If(~empty):
                        goto("receive", "sum")
                with m.Else():
                    m.d.comb += is_data.eq(1)
            with m.Elif(packet_open):
                m.d.sync += idle_count.eq(idle_count + 1)
                with m.If(expired):
                    m.d.comb += timed_out.eq(1)
                    m.d.sync += code.eq(ErrorCode.TIMEOUT)
                    goto("receive", "decide")

            with m.If(is_data):
                m.d.sync += crc.eq(crc16_step(crc, value))
                with m.If(index != max_index):
                    m.d.sync += index.eq(index + 1)
                # One-hot byte position: no wide compares on the capture enables.
                m.d.sync += where.eq(Cat(Const(0, 1), where[:-1]) |
                                     (where[-1] << (len(where) - 1)))
                with m.If(where[0]):
                    m.d.sync += [kind.eq(value),
                                 slot_was_free.eq(~slot_full.bit_select(write_slot, 1))]
                for i in range(PIXELS_HEADER_BYTES - 1):
                    with m.If(where[i + 1]):
                        m.d.sync += header[i].eq(value)
                with m.If(where[-1] & (sample_position != chunk)):
                    m.d.sync += sample_position.eq(sample_position + 1)
            m.d.comb += [
                write_port.addr.eq(Cat(sample_position[:chunk_bits], write_slot)),
                write_port.data.eq(value),
                write_port.en.eq(is_data & where[-1] & may_write &
                                 (sample_position != chunk)),
            ]

        with m.If(parser_in["sum"]):
            # The checks in three registered steps: first the sums and the plain compares.
            is_pixels = kind_is[Command.PIXELS]
            count_bad = (count_field == 0) | (count_field > chunk)
            if ppc > 1:
                count_bad |= count_field[:(ppc - 1).bit_length()] != 0
            m.d.sync += [
                end_offset.eq(offset_field + count_field),
                samples_sent.eq(index - (PIXELS_HEADER_BYTES + 2)),
                flag_short.eq(index_is_short),
                flag_crc.eq(crc != 0),
                flag_command.eq(~kind_is[Command.INFO] & ~kind_is[Command.CONFIG] &
                                ~kind_is[Command.PIXELS] & ~kind_is[Command.SYNC]),
                flag_length.eq((kind_is[Command.INFO] & ~index_fits[Command.INFO]) |
                               (kind_is[Command.CONFIG] & ~index_fits[Command.CONFIG]) |
                               (kind_is[Command.SYNC] & ~index_fits[Command.SYNC]) |
                               (is_pixels & (~index_fits[Command.PIXELS] | count_bad))),
                # Byte by byte: one wide compare is too deep for one cycle.
                position_bytes.eq(Cat(
                    header[i] != expected[8 * i:8 * i + 8] for i in range(5))),
                flag_busy.eq(is_pixels & ~slot_was_free),
                flag_value.eq((kind == Command.CONFIG) &
                              ((shift_field > 31) | (dense_field > 1))),
            ]
            goto("sum", "compare")

        with m.If(parser_in["compare"]):
            # Then the compares of the sums.
            m.d.sync += [
                flag_position.eq(position_bytes.any()),
                flag_count.eq(samples_sent != count_field),
                flag_past_end.eq(end_offset > self.frame_size),
                frame_done.eq(end_offset == self.frame_size),
            ]
            goto("compare", "check")

        with m.If(parser_in["check"]):
            # Last, the error code by priority.
            length_bad = flag_length | (kind_is[Command.PIXELS] &
                                        (flag_count | flag_past_end))
            by_priority = [
                (bad_overrun, ErrorCode.OVERRUN), (bad_framing, ErrorCode.FRAMING),
                (flag_short, ErrorCode.LENGTH), (flag_crc, ErrorCode.CRC),
                (flag_command, ErrorCode.COMMAND), (length_bad, ErrorCode.LENGTH),
                (kind_is[Command.PIXELS] & flag_position, ErrorCode.POSITION),
                (flag_busy, ErrorCode.BUSY), (flag_value, ErrorCode.VALUE),
            ]
            chosen_code = Const(0, 8)
            for condition, error in reversed(by_priority):
                chosen_code = Mux(condition, error, chosen_code)
            m.d.sync += code.eq(chosen_code)
            goto("check", "decide")

        with m.If(parser_in["decide"]):
            # Registered one-hot decisions keep the checks out of the acting cycle.
            m.d.sync += [
                act_error.eq(code != 0),
                act_info.eq((code == 0) & (kind == Command.INFO)),
                act_sync.eq((code == 0) & (kind == Command.SYNC)),
                act_config.eq((code == 0) & (kind == Command.CONFIG)),
                act_commit.eq((code == 0) & (kind == Command.PIXELS)),
                act_waits.eq(~((code == 0) & (kind == Command.PIXELS))),
                act_waits_quiet.eq((code == 0) & ((kind == Command.SYNC) |
                                                  (kind == Command.CONFIG))),
                next_frame.eq(expected_frame + frame_done),
                next_offset.eq(Mux(frame_done, 0, end_offset)),
            ]
            goto("decide", "act")

        # ``act`` waits until the answer may go; ``do`` acts, a cycle later, from flip-flops
        # (the reply slot and quiet cannot turn back in between: only the parser fills the
        # slot, and nothing new enters the packet slots while it waits).
        with m.If(parser_in["act"]):
            with m.If(proceed):
                goto("act", "do")

        with m.If(parser_in["do"]):
            goto("do", "restart")

        with m.If(parser_in["restart"]):
            restart()
            goto("restart", "receive")

        # The acting cycle's effects.
        with m.If(parser_in["do"]):
            with m.If(act_error):
                answer(Reply.ERROR, code, expected_frame, expected_offset)
                m.d.sync += self.error.eq(1)
            with m.If(act_info):
                m.d.sync += [reply_pending.eq(1), reply_is_info.eq(1)]
            with m.If(act_sync):
                answer(Reply.SYNC, header[0], expected_frame, expected_offset)
            with m.If(act_config):
                answer(Reply.ACK, Command.CONFIG, 0, 0)
                m.d.comb += configure.eq(1)
                m.d.sync += [self.threshold.eq(threshold_field),
                             self.shift.eq(shift_field), self.dense.eq(dense_field),
                             expected_frame.eq(0), expected_offset.eq(0)]
            with m.If(act_commit):
                # PIXELS, checked: hand the slot to the feeder.
                m.d.comb += commit.eq(1)
                m.d.sync += [
                    slot_count[write_slot].eq(count_field),
                    slot_end_frame[write_slot].eq(next_frame),
                    slot_end_offset[write_slot].eq(next_offset),
                    write_slot.eq(write_slot + 1 if window > 1 else 0),
                    expected_offset.eq(next_offset),
                    expected_frame.eq(next_frame),
                ]

        # ---- feeder: slots to engine pixel beats ------------------------------------------
        sample_index = Signal(chunk_bits)
        remaining = Signal(COUNT_WIDTH)
        slot_last = Signal()
        lane = Signal(range(max(ppc, 2)))
        beat = Signal(data.ArrayLayout(8, ppc))
        feed_position = Signal(OFFSET_WIDTH)
        slot_done = Signal()

        with m.FSM(name="feeder"):
            with m.State("idle"):
                m.d.comb += feeder_idle.eq(1)
                with m.If(slot_full.bit_select(read_slot, 1)):
                    m.d.sync += [sample_index.eq(0), lane.eq(0),
                                 remaining.eq(slot_count[read_slot])]
                    m.next = "read"
            with m.State("read"):
                m.d.comb += read_port.en.eq(1)
                m.next = "fetch" if self.target.ram_read_register else "latch"
            if self.target.ram_read_register:
                with m.State("fetch"):      # the word goes into ``buffer_word``
                    m.next = "latch"
            with m.State("latch"):
                m.d.sync += [beat[i].eq(Mux(lane == i, buffer_word, beat[i]))
                             for i in range(ppc)]
                m.d.sync += [sample_index.eq(sample_index + 1), lane.eq(lane + 1),
                             remaining.eq(remaining - 1), slot_last.eq(remaining == 1)]
                with m.If(lane == ppc - 1):
                    m.d.sync += [
                        self.pixels.valid.eq(1),
                        self.pixels.payload.first.eq(feed_position == 0),
                        self.pixels.payload.last.eq(feed_position == self.frame_size - ppc),
                        lane.eq(0),
                    ]
                    m.next = "offer"
                with m.Else():
                    m.next = "read"
            with m.State("offer"):
                with m.If(self.pixels.ready):
                    m.d.sync += [
                        self.pixels.valid.eq(0),
                        feed_position.eq(Mux(self.pixels.payload.last, 0,
                                             feed_position + ppc)),
                    ]
                    with m.If(slot_last):
                        m.next = "done"
                    with m.Else():
                        m.next = "read"
            with m.State("done"):
                with m.If(~ack_pending):
                    m.d.comb += slot_done.eq(1)
                    m.d.sync += [
                        ack_pending.eq(1), ack.kind.eq(Reply.ACK),
                        ack.byte.eq(Command.PIXELS), ack.frame.eq(slot_end_frame[read_slot]),
                        ack.offset.eq(slot_end_offset[read_slot]),
                        read_slot.eq(read_slot + 1 if window > 1 else 0),
                    ]
                    m.next = "idle"
        # The address straight from flip-flops in every state (only the enable follows the
        # state): Yosys compares it with the write address to emulate the read port's
        # behaviour on a collision, and that compare should not start behind the state.
        m.d.comb += read_port.addr.eq(Cat(sample_index, read_slot))
        m.d.comb += self.pixels.payload.data.eq(beat)
        # Registered: the reset fans out to the whole engine. The feeder is idle then (CONFIG
        # waits for it), so its position may restart a cycle after CONFIG.
        m.d.sync += self.engine_reset.eq(configure)
        with m.If(self.engine_reset):
            m.d.sync += feed_position.eq(0)

        # Slot ownership: set when the parser commits a packet, cleared when it is fed.
        m.d.sync += slot_full.eq((slot_full | (commit << write_slot)) &
                                 ~(slot_done << read_slot))

        # ---- engine output: one event (or end of frame with its figures) at a time --------
        event_pending = Signal()
        event_is_end = Signal()
        event_value = Signal(self.event_layout)
        figures_wait = Signal()
        figures = Signal(4 * FIGURE_WIDTH)
        frame_number = Signal(FRAME_WIDTH)
        # Not while the engine resets: an event given then belongs to a dropped frame.
        m.d.comb += self.events.ready.eq(~event_pending & ~figures_wait & ~self.engine_reset)
        with m.If(self.events.valid & self.events.ready):
            m.d.sync += event_value.eq(self.events.payload)
            with m.If(self.events.payload.end_of_frame):
                m.d.sync += figures_wait.eq(1)
            with m.Else():
                m.d.sync += [event_pending.eq(1), event_is_end.eq(0)]
        with m.If(figures_wait):
            # The engine's figures are valid from the cycle after the end-of-frame beat.
            m.d.sync += [figures.eq(Cat(self.frame_events_in, self.frame_macs,
                                        self.frame_events_out, self.frame_cycles)),
                         figures_wait.eq(0), event_pending.eq(1), event_is_end.eq(1)]

        # ---- transmitter: load one whole packet body, shift it out ------------------------
        # Half rate on purpose (a byte per two cycles at most, the UART needs 10 * divisor):
        # every enable here is a register or two, not a handshake from downstream.
        packet = [Signal(8, name=f"packet_{i}") for i in range(INFO_BYTES)]
        left = Signal(range(INFO_BYTES + 1))
        busy = Signal()
        final = Signal()
        body_valid, body_last = Signal(), Signal()
        body_data = Signal(8)
        m.d.comb += [encoder.body.valid.eq(body_valid),
                     encoder.body.payload.data.eq(body_data),
                     encoder.body.payload.last.eq(body_last)]
        with m.If(encoder.body.ready):
            m.d.sync += body_valid.eq(0)

        def status_body(status):
            return [status.kind, status.byte, *_bytes_of(status.frame, 2),
                    *_bytes_of(status.offset, 3)]

        # What to send next is chosen in one cycle (by priority, into a one-hot register) and
        # loaded in the next, as an AND-OR of the sources: no priority chain in front of the
        # packet registers. A source chosen stays put until it is loaded (its pending flag
        # guards it), except the engine's output that CONFIG drops: masked as it is chosen.
        sources = [
            (self._info_bytes(), reply_pending & reply_is_info),
            (status_body(reply), reply_pending & ~reply_is_info),
            (status_body(ack), ack_pending),
            ([Reply.END_OF_FRAME, *_bytes_of(frame_number, 2),
              *_bytes_of(figures, 4 * FIGURE_WIDTH // 8)], event_pending & event_is_end),
            ([Reply.EVENT, *_bytes_of(event_value.as_value(), self.event_bytes)],
             event_pending & ~event_is_end),
        ]
        choice = Signal(len(sources))
        choosing = Signal()
        priority = Signal(len(sources))
        taken = Const(0, 1)
        for k, (_, wanted) in enumerate(sources):
            m.d.comb += priority[k].eq(wanted & ~taken)
            taken = taken | wanted
        # The engine's output that CONFIG drops while it is being chosen is masked as it is
        # chosen: the choice register is then used as it is, without a check in front.
        loading = choice

        with m.If(busy):
            with m.If(~body_valid):
                m.d.sync += [body_valid.eq(1), body_data.eq(packet[0]), body_last.eq(final),
                             left.eq(left - 1), final.eq(left == 2), busy.eq(~final)]
                m.d.sync += [packet[i].eq(packet[i + 1]) for i in range(INFO_BYTES - 1)]
        with m.Elif(choosing):
            m.d.sync += choosing.eq(0)
            with m.If(loading != 0):
                length = 0
                for k, (body, _) in enumerate(sources):
                    length = length | Mux(loading[k], len(body), 0)
                m.d.sync += [left.eq(length), busy.eq(1), final.eq(0)]
                for i in range(INFO_BYTES):
                    value = Const(0, 8)
                    for k, (body, _) in enumerate(sources):
                        if i < len(body):
                            value = value | Mux(loading[k], body[i], 0)
                    m.d.sync += packet[i].eq(value)
            with m.If(loading[0] | loading[1]):
                m.d.sync += reply_pending.eq(0)
            with m.If(loading[2]):
                m.d.sync += ack_pending.eq(0)
            with m.If(loading[3] | loading[4]):
                m.d.sync += event_pending.eq(0)
            with m.If(loading[3]):
                m.d.sync += frame_number.eq(frame_number + 1)
        with m.Else():
            chosen = Cat(priority[:3], priority[3:] & ~self.engine_reset.replicate(2))
            m.d.sync += [choice.eq(chosen), choosing.eq(chosen != 0)]

        # CONFIG drops the engine's output not yet loaded for sending (its frames are gone),
        # in the cycle after it, with the engine's reset (a few loads instead of the whole
        # parser's decision on these enables): meanwhile ``events`` is not ready, and the CONFIG
        # answer, waiting from that cycle on, goes before any event in the transmitter.
        with m.If(self.engine_reset):
            m.d.sync += [event_pending.eq(0), figures_wait.eq(0), frame_number.eq(0)]
        return m
