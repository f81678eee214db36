"""A single-port RAM: on the iCE40 UP5K its SB_SPRAM256KA blocks, elsewhere a plain memory."""

import math

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, MemoryData
from amaranth.lib.wiring import In, Out

__all__ = ["SinglePortRam", "SPRAM_CELL", "SPRAM_DEPTH", "SPRAM_WIDTH", "SINGLE_PORT",
           "spram_blocks"]

#: The iCE40 UP5K's single-port RAM cell, and its words and bits per word (256 kbit).
SPRAM_CELL = "SB_SPRAM256KA"
SPRAM_DEPTH, SPRAM_WIDTH = 16384, 16
#: The attribute that marks the stand-in memory of a :class:`SinglePortRam` (for estimates
#: before synthesis: on the iCE40 it is SPRAM, not block RAM).
SINGLE_PORT = "eventconv_single_port"


def spram_blocks(depth, width):
    """SB_SPRAM256KA blocks a ``depth`` x ``width`` single-port RAM takes: side by side for
    the width; depths above one block are not built (:class:`SinglePortRam`)."""
    return math.ceil(width / SPRAM_WIDTH) * math.ceil(depth / SPRAM_DEPTH)


class SinglePortRam(wiring.Component):
    """One port: a read or a write per cycle, at one address.

    With ``en`` high and ``write`` low, the word at ``addr`` is on ``data_out`` from the next
    cycle; it stays there while ``en`` is low. With ``en`` and ``write`` high, ``data_in`` is
    written at ``addr`` and ``data_out`` is unspecified afterwards (the SPRAM gives X) until the
    next read. Latency 1, one access per cycle.

    Elaborated for an iCE40 platform (``platform.family``, in any case, ``"ice40"``) it is
    ``ceil(width / 16)`` SB_SPRAM256KA blocks side by side (Yosys does not infer them from a
    memory), which needs ``depth <= 16384``; elsewhere (simulation, exported Verilog, other
    families) an :class:`~amaranth.lib.memory.Memory` with the same cycle behaviour, whose
    contents :attr:`data` testbenches may look into. After a write its ``data_out`` is the
    word written over (the SPRAM's is X), so a user that relies on the word read before
    fails in simulation too. The SPRAM starts with unspecified contents, the memory with
    zeros: a user writes every word before it reads it.

    Parameters
    ----------
    shape : shape-castable
        The word.
    depth : int
        Words.

    Members
    -------
    addr : In(range(depth))
    en, write : In(1)
    data_in : In(shape)
    data_out : Out(shape)
    """

    def __init__(self, *, shape, depth):
        self.data = MemoryData(shape=shape, depth=depth, init=[])
        self.depth, self.shape = depth, shape
        super().__init__({
            "addr": In(range(depth)),
            "en": In(1),
            "write": In(1),
            "data_in": In(shape),
            "data_out": Out(shape),
        })

    def elaborate(self, platform):
        # amaranth-boards' iCE40 platforms say "iCE40", eventconv's stand-in "ice40".
        if str(getattr(platform, "family", "")).lower() == "ice40":
            return self._spram()
        m = Module()
        m.submodules.memory = memory = Memory(data=self.data, attrs={SINGLE_PORT: 1})
        read = memory.read_port()
        write = memory.write_port()
        m.d.comb += [
            # A write reads too (the old word): like the SPRAM's X, not the word read before.
            read.addr.eq(self.addr), read.en.eq(self.en),
            write.addr.eq(self.addr), write.data.eq(self.data_in),
            write.en.eq(self.en & self.write),
            self.data_out.eq(read.data),
        ]
        return m

    def _spram(self):
        if self.depth > SPRAM_DEPTH:
            raise ValueError(f"an SB_SPRAM256KA RAM holds at most {SPRAM_DEPTH} words, "
                             f"not {self.depth}")
        m = Module()
        width = len(self.data_in)
        blocks = math.ceil(width / SPRAM_WIDTH)
        data_in = Signal(blocks * SPRAM_WIDTH)
        data_out = Signal(blocks * SPRAM_WIDTH)
        address = Signal(range(SPRAM_DEPTH))
        m.d.comb += [data_in.eq(self.data_in), address.eq(self.addr),
                     self.data_out.eq(data_out[:width])]
        for k in range(blocks):
            bits = slice(k * SPRAM_WIDTH, (k + 1) * SPRAM_WIDTH)
            m.submodules[f"spram_{k}"] = Instance(
                SPRAM_CELL,
                i_ADDRESS=address, i_DATAIN=data_in[bits], i_MASKWREN=Const(0b1111, 4),
                i_WREN=self.write, i_CHIPSELECT=self.en, i_CLOCK=ClockSignal("sync"),
                i_STANDBY=Const(0), i_SLEEP=Const(0), i_POWEROFF=Const(1),
                o_DATAOUT=data_out[bits])
        return m
