"""SLIP decoding on the board's side of the host link (:mod:`eventconv.protocol`): received bytes
to packet items."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from eventconv.hw.link.uart import received_layout
from eventconv.protocol.constants import END, ESC, ESC_END, ESC_ESC

__all__ = ["item_layout", "SlipReceiver"]


def item_layout():
    """A decoded item: a body byte ``data`` or, with ``end``, a packet end. ``framing``: a low
    stop bit in its byte or in the ESC before it, or an invalid escape (``end`` then says
    whether the byte after the ESC was END). ``overrun``: received bytes were lost before it.
    """
    return data.StructLayout({"data": 8, "end": 1, "framing": 1, "overrun": 1})


class SlipReceiver(wiring.Component):
    """Received bytes to packet items: SLIP decoding (RFC 1055) with the UART's error flags.

    A received byte becomes at most one item; an ESC becomes none, its flags ride along with
    the item of the byte after it. Two registered stages: the first holds the received byte
    with its compares against the four SLIP codes already worked out, so that the decoder
    starts from flip-flops; the second holds the item.

    Members
    -------
    received : ``In(stream.Signature(received_layout()))``
        Bytes from the UART receiver; ``ready`` while the first stage is empty.
    items : ``Out(stream.Signature(item_layout()))``
        Items (registered).
    escaping : ``Out(1)``
        From a register: an ESC was taken and the byte after it not yet (a packet is open).
    drop : ``In(1)``
        Forget an ESC taken (its packet timed out): the next byte is decoded afresh.

    Latency: an item is valid 2 cycles after its byte's transfer on ``received``. Throughput:
    a byte per two cycles at most (far above any UART's rate).
    """

    received: In(stream.Signature(received_layout()))
    items: Out(stream.Signature(item_layout()))
    escaping: Out(1)
    drop: In(1)

    def elaborate(self, platform):
        m = Module()
        # A register per field, not one for the payload: Yosys works out a register's enable
        # for all its bits at once, and these fields load under different conditions.
        item_valid, item_end, item_framing, item_overrun = (
            Signal(name=f"item_{n}") for n in ("valid", "end", "framing", "overrun"))
        item_data = Signal(8)
        item = self.items.payload
        m.d.comb += [self.items.valid.eq(item_valid), item.data.eq(item_data),
                     item.end.eq(item_end), item.framing.eq(item_framing),
                     item.overrun.eq(item_overrun)]
        item_take = Signal()
        m.d.comb += item_take.eq(item_valid & self.items.ready)

        escape = Signal()
        escape_framing, escape_overrun = Signal(), Signal()
        m.d.comb += self.escaping.eq(escape)

        # The first stage takes a byte only when empty.
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
        with m.If(self.drop):
            m.d.sync += escape.eq(0)
        return m
