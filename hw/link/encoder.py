"""Packet bodies to wire bytes on the board's side of the host link: the CRC-16 and SLIP framing
of :mod:`eventconv.protocol` (whose package docstring specifies them)."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from eventconv.protocol.constants import CRC_INIT, CRC_POLY, END, ESC, ESC_END, ESC_ESC

__all__ = ["crc16_step", "body_layout", "PacketEncoder"]


def crc16_step(crc, byte):
    """The CRC-16/CCITT-FALSE register after one more byte (an Amaranth expression)."""
    for i in reversed(range(8)):
        feedback = byte[i] ^ crc[15]
        crc = Cat(Const(0, 1), crc[:15]) ^ Mux(feedback, CRC_POLY, 0)
    return crc


def body_layout():
    """A byte of a packet body; ``last`` on the packet's last byte."""
    return data.StructLayout({"data": 8, "last": 1})


class PacketEncoder(wiring.Component):
    """Packet bodies to wire bytes: appends the CRC (high byte first), SLIP-escapes, ends
    each packet with END.

    Members
    -------
    body : ``In(stream.Signature(body_layout()))``
        Body bytes; ``last`` on a packet's last byte. ``ready`` is a register.
    send : ``Out(stream.Signature(8))``
        Wire bytes (registered), one per two cycles at most.

    Every wire byte is made ready in a register a cycle or more before it is sent, with its
    escape worked out (the byte to send first and the one to send after it), so sending only
    picks one of a few registers.
    """

    body: In(stream.Signature(body_layout()))
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
