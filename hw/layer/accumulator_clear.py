"""The accumulator unit's clear sequence after reset: the bias into every accumulator."""

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from eventconv.hw.layouts import UploadSignature
from eventconv.protocol.upload import BIAS_BYTES

__all__ = ["ClearSequence"]


class ClearSequence(wiring.Component):
    """Walks the bank addresses once after reset, giving each address's bias per lane.

    Bank address ``group * positions + position`` holds accumulators of output channel
    ``group * lanes + j`` in lane j, so the word to write there is that channel's bias. The
    unit writes it into every bank of every lane while ``clearing`` is high.

    Latency: ``clearing`` is high from reset for ``groups * positions`` cycles, ``address``
    counting from 0 by one a cycle. Throughput: one address per cycle.

    Parameters
    ----------
    groups : int
        Channel groups (``channels_out / lanes``).
    positions : int
        Addresses per group (``H * W / 4``).
    lanes : int
        Output channels per bank address.
    bias : list of int, [groups * lanes]
        Each output channel's bias.
    accumulator_width : int
        Signed width of the words.
    writable : bool
        The bias is held in registers (no reset: CONFIG's engine reset keeps them) that
        ``bias_write`` writes, initially ``bias``; else constants.

    Members
    -------
    clearing : Out(1)
        The sequence runs (a register, high after reset).
    clearing_next : Out(1)
        ``clearing`` of the next cycle (combinational, for registers that must know it early).
    address : Out(range(groups * positions))
        The address cleared in this cycle (a register).
    bias : Out(ArrayLayout(signed(accumulator_width), lanes))
        ``bias[j]``: lane j's word for ``address``.
    bias_write : In(UploadSignature()) (with ``writable``)
        Byte writes of the bias: byte ``address % 4`` (little-endian, two's complement) of
        output channel ``address // 4``; bits beyond the width are dropped.
    """

    def __init__(self, *, groups, positions, lanes, bias, accumulator_width, writable=False):
        self.groups, self.positions, self.lanes = groups, positions, lanes
        self.depth = groups * positions
        self._bias = [int(value) for value in bias]
        self._shape = shape = signed(accumulator_width)
        self.writable = bool(writable)
        super().__init__({
            **({"bias_write": In(UploadSignature())} if self.writable else {}),
            "clearing": Out(1, init=1),
            "clearing_next": Out(1),
            "address": Out(range(self.depth)),
            "bias": Out(data.ArrayLayout(shape, lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        group = Signal(range(self.groups), name="clear_group")
        position = Signal(range(self.positions), name="clear_position")
        with m.If(self.clearing):
            m.d.sync += self.address.eq(self.address + 1)
            with m.If(position == self.positions - 1):
                m.d.sync += [position.eq(0), group.eq(group + 1)]
            with m.Else():
                m.d.sync += position.eq(position + 1)
            with m.If(self.address == self.depth - 1):
                m.d.sync += self.clearing.eq(0)
        m.d.comb += self.clearing_next.eq(self.clearing & (self.address != self.depth - 1))

        # Combinational selections are Mux expressions, not m.If: Yosys writes m.If as an
        # always @* block, which Icarus does not run until an input changes, and the clear's
        # inputs sit still from time 0 (its writes would be lost).
        values = self._bias_registers(m) if self.writable else \
            [Const(value, self._shape) for value in self._bias]
        for j in range(self.lanes):
            bias = values[j]
            for g in range(1, self.groups):
                bias = Mux(group == g, values[g * self.lanes + j], bias)
            m.d.comb += self.bias[j].eq(bias)
        return m

    def _bias_registers(self, m):
        """A register per output channel, written a byte at a time by ``bias_write``."""
        width = self._shape.width
        values = [Signal(self._shape, name=f"bias_{o}", init=value, reset_less=True)
                  for o, value in enumerate(self._bias)]
        write = self.bias_write
        channel = write.address[2:(BIAS_BYTES * len(values) - 1).bit_length()]
        for o, value in enumerate(values):
            for k in range(0, (width + 7) // 8):
                bits = slice(8 * k, min(8 * k + 8, width))
                with m.If(write.en & (channel == o) & (write.address[:2] == k)):
                    m.d.sync += value[bits].eq(write.data[:bits.stop - bits.start])
        return values
