"""The host link's buffer: PIXELS packets wait in slots of block RAM between the parser, which
fills them, and the feeder, which gives their samples to the engine."""

from amaranth.hdl import Array, Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from eventconv.hw.primitives.block_ram import NO_RW_CHECK, UncheckedReadPort
from eventconv.hw.target import GENERIC, checked_target
from eventconv.protocol.constants import COUNT_WIDTH, FRAME_WIDTH, OFFSET_WIDTH

__all__ = ["slot_layout", "SlotWriteSignature", "SlotReadSignature", "SlotBuffer"]


def slot_layout():
    """A full slot: its packet's sample ``count`` and the expected position after the packet
    (``end_frame``, ``end_offset``), which its ACK gives; with ``weights`` a WEIGHTS packet's
    bytes instead, ``end_frame`` its memory and ``end_offset`` its first byte's address."""
    return data.StructLayout({"count": COUNT_WIDTH, "end_frame": FRAME_WIDTH,
                              "end_offset": OFFSET_WIDTH, "weights": 1})


def _sample_bits(chunk):
    return (chunk - 1).bit_length()


def SlotWriteSignature(chunk):
    """The buffer's write side, seen from the writer: ``addr``, ``data``, ``en`` write a sample
    of the write slot; ``free`` says that slot is free; ``commit`` (a pulse) marks it full,
    described by ``info``, and the next slot becomes the write slot."""
    return wiring.Signature({
        "addr": Out(_sample_bits(chunk)), "data": Out(8), "en": Out(1), "free": In(1),
        "commit": Out(1), "info": Out(slot_layout())})


def SlotReadSignature(chunk):
    """The buffer's read side, seen from the reader: ``slot`` offers the read slot while it is
    full, and its transfer frees it (the next slot becomes the read slot); ``addr`` with ``en``
    reads a sample of it into ``data`` (``en`` matters only with the target's
    ``ram_read_register``: without, the RAM reads every cycle); ``any_full`` says some slot is
    full."""
    return wiring.Signature({
        "slot": In(stream.Signature(slot_layout())),
        "addr": Out(_sample_bits(chunk)), "en": Out(1), "data": In(8),
        "any_full": In(1)})


class SlotBuffer(wiring.Component):
    """``window`` slots of ``chunk`` samples, each free or full, used round in order by both
    sides: the writer fills and commits the write slot, the reader reads and frees the read
    slot. A slot is written only while it is free and read only while it is full, so no read
    meets a write of its word.

    Parameters
    ----------
    chunk : int
        Samples per slot, a power of two. The RAM is ``window * chunk`` bytes.
    window : int
        Slots: 1, 2 or 4.
    target : :class:`~eventconv.hw.target.Target`
        With ``ram_read_register`` the RAM's read data goes into a register that feeds nothing
        else, a cycle before it is used (on the ECP5 the block RAM's own output register); the
        RAM then has no read-during-write logic either.

    Members
    -------
    write : ``In(SlotWriteSignature(chunk))``
        From the parser.
    read : ``In(SlotReadSignature(chunk))``
        From the feeder; ``read.slot.valid`` and ``read.any_full`` come from the slots'
        flip-flops, the read address straight from the reader's.

    Latency: a committed slot is offered on ``read.slot`` from the next cycle, a freed slot is
    ``write.free`` from the next cycle; ``read.data`` is the word at ``read.addr`` a cycle
    later (two with ``ram_read_register``, which reads only with ``read.en``). Throughput: a
    sample written and one read per cycle.
    """

    def __init__(self, *, chunk, window, target=GENERIC):
        self.chunk, self.window = chunk, window
        self.target = checked_target(target)
        super().__init__({"write": In(SlotWriteSignature(chunk)),
                          "read": In(SlotReadSignature(chunk))})

    def elaborate(self, platform):
        m = Module()
        window = self.window
        slot_bits = max(1, (window - 1).bit_length())
        write, read = self.write, self.read

        if not self.target.ram_read_register:
            m.submodules.buffer = buffer = Memory(shape=8, depth=window * self.chunk, init=[])
            write_port = buffer.write_port()
            # Its enable stays at its default, 1 (the RAM reads every cycle): the feeder uses
            # the word only in the cycle after it set the address.
            read_port = buffer.read_port()
            m.d.comb += read.data.eq(read_port.data)
        else:
            m.submodules.buffer = buffer = Memory(shape=8, depth=window * self.chunk, init=[],
                                                  attrs=NO_RW_CHECK)
            write_port = buffer.write_port()
            read_port = UncheckedReadPort(m, buffer, name="buffer_read")
            m.d.comb += read_port.en.eq(read.en)
            buffer_word = Signal(8, reset_less=True)
            m.d.sync += buffer_word.eq(read_port.data)
            m.d.comb += read.data.eq(buffer_word)

        slot_full = Signal(window)
        slot_count = Array(Signal(COUNT_WIDTH, name=f"slot_count_{i}") for i in range(window))
        slot_end_frame = Array(Signal(FRAME_WIDTH, name=f"slot_end_frame_{i}")
                               for i in range(window))
        slot_end_offset = Array(Signal(OFFSET_WIDTH, name=f"slot_end_offset_{i}")
                                for i in range(window))
        slot_weights = Array(Signal(name=f"slot_weights_{i}") for i in range(window))
        write_slot = Signal(slot_bits)
        read_slot = Signal(slot_bits)

        m.d.comb += [
            write_port.addr.eq(Cat(write.addr, write_slot)),
            write_port.data.eq(write.data),
            write_port.en.eq(write.en),
            write.free.eq(~slot_full.bit_select(write_slot, 1)),
        ]
        with m.If(write.commit):
            m.d.sync += [
                slot_count[write_slot].eq(write.info.count),
                slot_end_frame[write_slot].eq(write.info.end_frame),
                slot_end_offset[write_slot].eq(write.info.end_offset),
                slot_weights[write_slot].eq(write.info.weights),
                write_slot.eq(write_slot + 1 if window > 1 else 0),
            ]

        # The address straight from flip-flops (the reader's sample index and the read slot):
        # Yosys compares it with the write address to emulate the read port's behaviour on a
        # collision, and that compare should not start behind the reader's state.
        m.d.comb += [
            read_port.addr.eq(Cat(read.addr, read_slot)),
            read.slot.valid.eq(slot_full.bit_select(read_slot, 1)),
            read.slot.payload.count.eq(slot_count[read_slot]),
            read.slot.payload.end_frame.eq(slot_end_frame[read_slot]),
            read.slot.payload.end_offset.eq(slot_end_offset[read_slot]),
            read.slot.payload.weights.eq(slot_weights[read_slot]),
            read.any_full.eq(slot_full.any()),
        ]
        with m.If(read.slot.ready):
            m.d.sync += read_slot.eq(read_slot + 1 if window > 1 else 0)

        # Set when the parser commits a slot, cleared when the feeder frees it.
        m.d.sync += slot_full.eq((slot_full | (write.commit << write_slot)) &
                                 ~(read.slot.ready << read_slot))
        return m
