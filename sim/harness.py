"""The engine in a simulation harness: its input and output streams driven and taken by
gateware, so that the cocotb side acts once per frame (or per half ring of input), not once
per clock.

A cocotb coroutine costs microseconds per clock edge it waits for; driving and taking the
engine's streams beat by beat from Python held Verilator to about 16 thousand cycles a second.
Here a :class:`StreamSource` offers the words of a ring memory the testbench keeps filled
through the simulator (VPI, no simulated time), a :class:`StreamSink` writes the beats it
takes into a memory the testbench reads back, and each inserts its random idle cycles or
backpressure from a xorshift generator of its own. The sink checks the stream rule on every
beat (``valid`` held, payload unchanged until taken) and keeps a sticky ``protocol_error``.

Only for simulation: the memories have an unused write port so that Yosys keeps them.
"""

from amaranth.hdl import Module, Mux, Shape, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from eventconv.flow.verilog import export_verilog
from eventconv.hw.layer.engine import EventConvEngine
from eventconv.hw.target import GENERIC

__all__ = ["StreamSource", "StreamSink", "EngineHarness", "harness_verilog", "harness_public",
           "chance", "power_of_two", "SOURCE_DEPTH"]

#: Probabilities are given as a threshold on 8 random bits: ``chance(p)`` of 256.
CHANCE_BITS = 8


def chance(probability):
    """The threshold of a probability (0 to 1) for :attr:`StreamSource.idle` and
    :attr:`StreamSink.stall`: a cycle is idle when 8 random bits are below it. So it moves in
    steps of 1/256, from 0 (never) up to 255/256; any probability above 0 gives at least 1."""
    if not 0 <= probability <= 1:
        raise ValueError(f"probability must be in 0..1, not {probability!r}")
    threshold = min(round(probability * (1 << CHANCE_BITS)), (1 << CHANCE_BITS) - 1)
    return max(threshold, 1) if probability > 0 else 0


def power_of_two(count, least=16):
    """The smallest power of two at least ``count`` and ``least`` (memory depths: fewer
    distinct designs to build)."""
    return max(least, 1 << max(count - 1, 0).bit_length())


def _random_below(m, seed, threshold, name):
    """A xorshift32 generator, loaded from ``seed`` (0, which xorshift never leaves, stands
    for a fixed odd word) in its first cycle after reset; returns a signal that is high when
    its low 8 bits are below ``threshold``."""
    state = Signal(32, name=f"{name}_state")
    seeded = Signal(name=f"{name}_seeded")
    x1 = Signal(32)
    x2 = Signal(32)
    x3 = Signal(32)
    m.d.comb += [x1.eq(state ^ (state << 13)[:32]), x2.eq(x1 ^ (x1 >> 17)),
                 x3.eq(x2 ^ (x2 << 5)[:32])]
    m.d.sync += [state.eq(Mux(seeded, x3, Mux(seed == 0, 0x9E3779B9, seed))),
                 seeded.eq(1)]
    below = Signal(name=f"{name}_hit")
    m.d.comb += below.eq(seeded & (state[:CHANCE_BITS] < threshold))
    return below


class StreamSource(wiring.Component):
    """Offers the words of a ring memory on ``stream``, in order, idle on random cycles: the
    testbench writes words ahead of ``position`` and moves ``end`` past them, so a clip of any
    length streams through a memory of fixed size without a gap.

    Members
    -------
    stream : ``Out(stream signature)``
        The beats (``valid`` held until taken).
    end : ``In(range(2 * depth))``
        Words written so far, modulo ``2 * depth``: word n is at ``n % depth``.
    waiting : ``Out(range(depth + 1))``
        Words written and not yet taken (``end`` minus the position, modulo ``2 * depth``).
    low : ``Out(1)``
        ``waiting`` is at most half the memory: room for half of it again.
    idle : ``In(8)``, seed : ``In(32)``
        The chance of an idle cycle before a beat (:func:`chance`), the generator's seed.
    """

    def __init__(self, signature, depth):
        assert depth & (depth - 1) == 0, "a power of two"
        self._width = Shape.cast(signature.members["payload"].shape).width
        self.depth = depth
        super().__init__({
            "stream": Out(signature),
            "end": In(range(2 * depth)),
            "waiting": Out(range(depth + 1)),
            "low": Out(1),
            "idle": In(CHANCE_BITS),
            "seed": In(32),
            "poke_addr": In(range(depth)),
            "poke_data": In(self._width),
            "poke_en": In(1),
        })
        #: The words offered (written by the testbench).
        self.words = Memory(shape=self._width, depth=depth, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.words = words = self.words
        read = words.read_port(domain="comb")
        poke = words.write_port()
        m.d.comb += [poke.addr.eq(self.poke_addr), poke.data.eq(self.poke_data),
                     poke.en.eq(self.poke_en)]
        position = Signal(range(2 * self.depth))     # wraps with ``end``
        idle = _random_below(m, self.seed, self.idle, "idle")
        transfer = self.stream.valid & self.stream.ready
        m.d.comb += [read.addr.eq(position[:-1]), self.stream.payload.eq(read.data),
                     self.waiting.eq((self.end - position)[:len(position)]),
                     self.low.eq(self.waiting <= self.depth // 2)]
        with m.If(transfer):
            m.d.sync += position.eq(position + 1)
        with m.If(~self.stream.valid | transfer):
            more = Mux(transfer, position + 1, position)[:len(position)] != self.end
            m.d.sync += self.stream.valid.eq(more & ~idle)
        return m


class StreamSink(wiring.Component):
    """Takes beats into ``words`` until one with its ``end`` bit set, ready low on random
    cycles; then holds ``done`` (and ``ready`` low) until ``clear``.

    Members
    -------
    stream : ``In(stream signature)``
        The beats taken.
    done : ``Out(1)``, count : ``Out``
        An end beat was taken; the beats taken (the end beat included) since ``clear``.
    clear : ``In(1)``
        Forget the beats taken: ``count`` 0, ``done`` low.
    stall : ``In(8)``, seed : ``In(32)``
        The chance of a cycle without ``ready`` (:func:`chance`), the generator's seed.
    protocol_error : ``Out(1)``
        Sticky: ``valid`` dropped, or the payload changed, before a beat was taken.
    overflow : ``Out(1)``
        Sticky: a beat was offered with ``words`` full (it waits: nothing is lost, but the
        frame cannot end; the testbench fails on it rather than waiting for ``done``).
    """

    def __init__(self, signature, depth, end_bit):
        self._width = Shape.cast(signature.members["payload"].shape).width
        self.depth, self.end_bit = depth, end_bit
        super().__init__({
            "stream": In(signature),
            "done": Out(1),
            "count": Out(range(depth + 1)),
            "clear": In(1),
            "stall": In(CHANCE_BITS),
            "seed": In(32),
            "protocol_error": Out(1),
            "overflow": Out(1),
        })
        #: The beats taken (read by the testbench).
        self.words = Memory(shape=self._width, depth=depth, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.words = words = self.words
        write = words.write_port()
        stall = _random_below(m, self.seed, self.stall, "stall")
        payload = Value.cast(self.stream.payload)
        m.d.comb += self.stream.ready.eq(~self.done & ~stall & (self.count != self.depth))
        transfer = self.stream.valid & self.stream.ready
        m.d.comb += [write.addr.eq(self.count), write.data.eq(payload), write.en.eq(transfer)]
        with m.If(transfer):
            m.d.sync += self.count.eq(self.count + 1)
            with m.If(payload[self.end_bit]):
                m.d.sync += self.done.eq(1)
        with m.If(self.stream.valid & ~self.done & (self.count == self.depth)):
            m.d.sync += self.overflow.eq(1)
        with m.If(self.clear):
            m.d.sync += [self.count.eq(0), self.done.eq(0)]
        # The stream rule, on every beat.
        waited = Signal()
        last = Signal.like(payload)
        m.d.sync += [waited.eq(self.stream.valid & ~self.stream.ready), last.eq(payload)]
        with m.If(waited & (~self.stream.valid | (payload != last))):
            m.d.sync += self.protocol_error.eq(1)
        return m


class EngineHarness(wiring.Component):
    """An :class:`~eventconv.hw.layer.engine.EventConvEngine` between a :class:`StreamSource`
    (``source_*``: pixels, or camera events) and a :class:`StreamSink` (``sink_*``: its
    events, each frame's up to its end of frame); the engine's knobs and figures are ports of
    the same names."""

    KNOBS = ("threshold", "dense", "shift", "output_threshold", "step")
    FIGURES = ("frame_events_in", "frame_macs", "frame_events_out", "frame_cycles")

    def __init__(self, engine, *, source_depth, sink_depth):
        self.engine = engine
        input_name = "camera" if engine.address_events else "pixels"
        self._input = getattr(engine, input_name)
        engine_members = engine.signature.members
        self.source = StreamSource(stream.Signature(self._input.payload.shape()), source_depth)
        end_bit = engine.events.payload.shape()["end_of_frame"].offset
        self.sink = StreamSink(stream.Signature(engine.events.payload.shape()), sink_depth,
                               end_bit)
        members = {}
        for name in self.KNOBS:
            if name in engine_members:
                members[name] = In(engine_members[name].shape, init=engine_members[name].init)
        for name in self.FIGURES:
            members[name] = Out(engine_members[name].shape)
        for name in ("end", "idle", "seed", "poke_addr", "poke_data", "poke_en"):
            members[f"source_{name}"] = In(self.source.signature.members[name].shape)
        for name in ("waiting", "low"):
            members[f"source_{name}"] = Out(self.source.signature.members[name].shape)
        for name in ("clear", "stall", "seed"):
            members[f"sink_{name}"] = In(self.sink.signature.members[name].shape)
        for name in ("done", "count", "protocol_error", "overflow"):
            members[f"sink_{name}"] = Out(self.sink.signature.members[name].shape)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        m.submodules.source = source = self.source
        m.submodules.sink = sink = self.sink
        wiring.connect(m, source.stream, self._input)
        wiring.connect(m, engine.events, sink.stream)
        for name in self.KNOBS:
            if hasattr(self, name):
                m.d.comb += getattr(engine, name).eq(getattr(self, name))
        for name in self.FIGURES:
            m.d.comb += getattr(self, name).eq(getattr(engine, name))
        for name in ("end", "idle", "seed", "poke_addr", "poke_data", "poke_en"):
            m.d.comb += getattr(source, name).eq(getattr(self, f"source_{name}"))
        for name in ("waiting", "low"):
            m.d.comb += getattr(self, f"source_{name}").eq(getattr(source, name))
        for name in ("clear", "stall", "seed"):
            m.d.comb += getattr(sink, name).eq(getattr(self, f"sink_{name}"))
        for name in ("done", "count", "protocol_error", "overflow"):
            m.d.comb += getattr(self, f"sink_{name}").eq(getattr(sink, name))
        return m


#: Words of the harness's source ring: any number of frames or windows of any size stream
#: through it.
SOURCE_DEPTH = 2048


def harness_public(name="eventconv_engine_harness"):
    """What the testbench reaches in the harness's Verilog (``run_cocotb``'s ``public``): the
    top's ports and the source's and sink's ``words``; Verilator may optimise the rest."""
    return ((name, "*"), ("*", "words"))


def harness_verilog(network, name="eventconv_engine_harness", *, target=GENERIC,
                    address_events=False, source_depth=SOURCE_DEPTH, sink_depth):
    """Verilog of the engine of ``network`` in an :class:`EngineHarness`."""
    engine = EventConvEngine(network, target=target, address_events=address_events)
    return export_verilog(EngineHarness(engine, source_depth=source_depth,
                                        sink_depth=sink_depth), name)
