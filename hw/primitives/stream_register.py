"""A register slice (skid buffer) for a stream: cuts the combinational ready and payload paths.

Chained blocks otherwise form one long ``ready`` path from the last consumer back to the first
producer (measured: accumulator -> fan-out -> detector -> host link was the iCE40's worst path).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StreamRegister"]


class StreamRegister(wiring.Component):
    """Two-entry skid buffer: full throughput, ``i.ready`` and ``o.valid``/``o.payload`` come
    straight from flip-flops.

    Parameters
    ----------
    layout : shape-castable
        Payload of the stream.
    skid_loads_when_empty : bool
        Load the skid register with ``i.payload`` in every cycle it is empty, not only when a
        beat must wait in it: its enable is then a flip-flop, not a function of ``o.ready``
        (on the ECP5 the consumer's ready and this enable were a path of four LUTs over a
        wide payload; the engine's slices use it on both families). The same beats come out
        either way.

    Members
    -------
    i : ``In(stream.Signature(layout))``
    o : ``Out(stream.Signature(layout))``

    Latency one cycle; throughput one beat per clock; beats are never lost, duplicated or
    reordered.
    """

    def __init__(self, layout, *, skid_loads_when_empty=False):
        if not isinstance(skid_loads_when_empty, bool):
            raise TypeError(f"skid_loads_when_empty must be a bool (True or False), "
                            f"not {skid_loads_when_empty!r}")
        self.layout = layout
        self.skid_loads_when_empty = skid_loads_when_empty
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    def elaborate(self, platform):
        m = Module()
        skid_valid = Signal()
        skid_payload = Signal(self.layout)
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(self.o.ready | ~self.o.valid):
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid_payload), self.o.valid.eq(1),
                             skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload),
                             self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~skid_valid):
            m.d.sync += skid_valid.eq(1)
            if not self.skid_loads_when_empty:
                m.d.sync += skid_payload.eq(self.i.payload)
        if self.skid_loads_when_empty:
            with m.If(~skid_valid):
                m.d.sync += skid_payload.eq(self.i.payload)
        return m
