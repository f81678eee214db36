"""The accumulator unit's clear sequence after reset: the bias into every accumulator."""

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

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
    """

    def __init__(self, *, groups, positions, lanes, bias, accumulator_width):
        self.groups, self.positions, self.lanes = groups, positions, lanes
        self.depth = groups * positions
        self._bias = [int(value) for value in bias]
        self._shape = shape = signed(accumulator_width)
        super().__init__({
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
        for j in range(self.lanes):
            bias = Const(self._bias[j], self._shape)
            for g in range(1, self.groups):
                bias = Mux(group == g, Const(self._bias[g * self.lanes + j], self._shape), bias)
            m.d.comb += self.bias[j].eq(bias)
        return m
