"""EventConvEngine, the whole chain (delta detector -> layers, linked by register slices ->
output register): the ``events`` stream keeps the protocol under any ``ready`` pattern, proven
by induction (depth 1: the output register holds a beat not taken, and ``priming`` only
falls). Bounded (``bmc``), from reset through the settle phase, the priming frame and a first
frame (depths in :mod:`.checks`): no end-of-frame beat out without an input frame's ``last``
beat taken (so never more out than in), at most one frame in flight, and (one layer) a frame's
end of frame out within a drain bound of ready cycles after its last beat, so exactly one out
per input frame, in order; an output event only in a frame a sample of which fired (SPEC step
1, against a reference frame the proof keeps itself), inside the output map, each (channel, y,
x) at most once a frame; an end-of-frame beat's other fields 0.

How: the solver drives ``pixels`` (any samples, any valid pattern, the stream rule assumed,
whole frames: ``first`` exactly on a frame's first beat, ``last`` exactly on its last),
``events.ready`` (any pattern), and ``threshold``, ``dense``, ``shift`` and
``output_threshold`` (a constant each: the contract changes them only between frames).
Counters count the ``last`` beats taken on ``pixels`` (``frames_in``) and the end-of-frame
beats given on ``events`` (``frames_out``). The proof keeps the reference frame as the contract
defines it (:func:`eventconv.core.model.detect_events`: a sample fires, and becomes the
reference, iff ``|x - r| > T``, or always in dense mode), and ``fired`` records whether a
sample of the frame in flight fired. Frames do not overlap (the engine takes a frame's first
beat only once the frame before has left; asserted too), so the frame in flight is the one
whose events come out.

Why the depths are what they are: after reset the engine waits ``settle_cycles`` (its blocks'
clear sequences), then runs the priming frame through every layer (its events and end of
frame swallowed at the output) and only then takes a first beat. The bounded checks reach past
the first frame's end of frame out (the cover check shows the step).

Not proven: the frame counts and the events' causes for every trace length. An induction would
need invariants over every block of the chain, the ends of frame inside each layer's 64-entry
event queue (a RAM) among them; the blocks' own proofs (:mod:`.delta_detector`, :mod:`.fanout`,
:mod:`.accumulator`, :mod:`.sparse_max_pool`) state more of each, deeper.
"""

from amaranth.asserts import AnyConst
from amaranth.hdl import Array, Assert, Assume, Cover, Mux, Signal, Value

from eventconv.core.config import Config
from eventconv.core.network import Network
from eventconv.hw.layer.engine import EventConvEngine
from eventconv.sim.formal.harness import (
    Counter,
    Opened,
    assert_once_a_frame,
    assert_stream,
    assume_stream,
    free,
    proof_module,
    quiet_cycles,
    transfer,
)

__all__ = ["EngineProof", "BUGS", "NETWORKS", "PARTS", "DRAIN"]

COUNT_WIDTH = 4
#: What each part states: "frames" (ends of frame in and out, the drain bound), "events"
#: (output events: caused, in range, once a frame). The stream rule is always stated.
PARTS = ("frames", "events")


def _layer(**fields):
    """A layer's fields: kernel 1, weights 1, bias 5 (so the priming frame's reset map has
    events to swallow; the weights and bias do not change the control)."""
    channels_in = fields.get("channels_in", 1)
    return {"channels_out": 1, "kernel_size": 1, "weights": [[[[1]] * channels_in]],
            "bias": [5], **fields}


#: The networks the checks run on (one input channel, one lane, one sample a beat):
#: "2x2", one layer pooled to 1 x 1; "2x2_layers2", a 2 x 2 layer without pooling, then one
#: pooled to 1 x 1 (the link between layers).
NETWORKS = {
    "2x2": lambda: Config.from_dict(_layer(height=2, width=2, channels_in=1)),
    "2x2_layers2": lambda: Network.from_dict({
        "height": 2, "width": 2, "channels_in": 1,
        "layers": [_layer(pool=1), _layer()]}),
}
#: Drain bound per network: a frame's end of frame is out by the last of this many cycles of
#: ``events.ready`` in a row after its last beat is taken. 2 x 2: the longest wait the solver
#: finds at the bounded depth is 32 cycles (a frame with an event; 32 fails). None for two
#: layers: their first frame's end of frame is out too near the depth (the bound would be
#: vacuous there).
DRAIN = {"2x2": 33}


class EngineProof:
    """Builds the proof of an :class:`EventConvEngine` on ``network`` (a key of
    :data:`NETWORKS`): the stream rule on ``events`` always, and the ``parts`` named (of
    :data:`PARTS`). ``patch`` plants a bug (see :data:`BUGS`). The proof has no lemmas (the
    stream rule closes by induction without), so a planted bug meets the stated properties
    alone. ``drain``: the drain bound (default :data:`DRAIN`'s, none without one)."""

    def __init__(self, network="2x2", *, parts=PARTS, patch=None, drain=None):
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown parts {sorted(unknown)}")
        self.network = network
        self.parts = tuple(parts)
        self.patch = patch
        self.drain = DRAIN.get(network) if drain is None else drain

    def __call__(self):
        engine = EventConvEngine(NETWORKS[self.network]())
        if engine.network.first.pixels_per_cycle != 1:
            raise ValueError("the proof takes one sample a beat")
        m, clk = proof_module()
        m.submodules.dut = Opened(engine, patch=self.patch)
        pixels, events = engine.pixels, engine.events
        free(m, [pixels.valid, pixels.payload, events.ready])
        self._knobs(m, engine)
        assume_stream(m, pixels, "pixels")
        assert_stream(m, events, "events")
        v = self._environment(m, engine)
        if "frames" in self.parts:
            self._frames(m, engine, v, self.drain)
        if "events" in self.parts:
            self._events(m, engine, v)
        return m, clk

    @staticmethod
    def _knobs(m, engine):
        """The runtime knobs: any constant each (changed only between frames)."""
        m.d.comb += [engine.threshold.eq(AnyConst(8)), engine.dense.eq(AnyConst(1))]
        for name in ("shift", "output_threshold"):
            member = Value.cast(getattr(engine, name))
            m.d.comb += member.eq(AnyConst(len(member)))

    @staticmethod
    def _environment(m, engine):
        """Whole frames on ``pixels``; the frame counters; the reference and ``fired``."""
        pixels, events = engine.pixels, engine.events
        beat, out = pixels.payload, events.payload
        first = engine.network.first
        depth = first.channels_in * first.height * first.width
        # Whole frames: ``first`` exactly at position 0, ``last`` exactly at the end.
        position = Signal(range(depth), name="position")
        with m.If(transfer(pixels)):
            m.d.sync += position.eq(Mux(position == depth - 1, 0, position + 1))
        with m.If(pixels.valid):
            m.d.comb += [Assume(beat.first == (position == 0)),
                         Assume(beat.last == (position == depth - 1))]
        v = {"eof_in": Signal(name="eof_in"), "eof_out": Signal(name="eof_out")}
        m.d.comb += [v["eof_in"].eq(transfer(pixels) & beat.last),
                     v["eof_out"].eq(transfer(events) & out.end_of_frame)]
        frames_in = Counter(m, v["eof_in"], COUNT_WIDTH, name="frames_in").value
        frames_out = Counter(m, v["eof_out"], COUNT_WIDTH, name="frames_out").value
        outstanding = Signal(COUNT_WIDTH, name="outstanding")
        m.d.comb += outstanding.eq(frames_in - frames_out)
        v.update(frames_in=frames_in, frames_out=frames_out, outstanding=outstanding)

        # The reference frame (SPEC step 1) and whether the frame in flight fired.
        reference = Array(Signal(8, name=f"reference_{i}") for i in range(depth))
        current = reference[position]
        fires = Signal(name="sample_fires")     # |x - r| > T, without a signed subtraction
        m.d.comb += fires.eq(engine.dense | (beat.data[0] > current + engine.threshold)
                             | (current > beat.data[0] + engine.threshold))
        fired = Signal(name="fired")
        with m.If(transfer(pixels) & fires):
            m.d.sync += [current.eq(beat.data[0]), fired.eq(1)]
        with m.Elif(v["eof_out"]):
            m.d.sync += fired.eq(0)
        v.update(fired=fired, position=position)
        return v

    @staticmethod
    def _frames(m, engine, v, drain):
        """Ends of frame: none out without an input frame's last beat taken (so never more out
        than in), one frame in flight at most, and (``drain`` not None) each out within
        ``drain`` cycles of ready."""
        events = engine.events
        out = events.payload
        outstanding = v["outstanding"]
        m.d.comb += [
            Assert(~(events.valid & out.end_of_frame) | (outstanding != 0),
                   "no end of frame out without an input frame's last beat taken"),
            Assert(outstanding <= 1, "at most one frame in flight (count in >= count out)"),
        ]
        if drain is not None:
            # With the frame counts above: exactly one end of frame out per input frame.
            quiet = quiet_cycles(m, events.ready & (outstanding != 0), drain)
            m.d.comb += Assert((quiet < drain) | (outstanding == 0),
                               f"drain: a frame's end of frame out within {drain} cycles of "
                               "ready in a row after its last beat")
        with m.If(events.valid & out.end_of_frame):
            m.d.comb += Assert((out.channel == 0) & (out.y == 0) & (out.x == 0)
                               & (out.delta == 0), "end of frame: other fields 0")
        m.d.comb += Cover(v["eof_out"], "an end of frame out")

    @staticmethod
    def _events(m, engine, v):
        """Output events: only in a frame a sample of which fired; inside the output map;
        each (channel, y, x) at most once a frame."""
        events = engine.events
        out = events.payload
        channels, rows, columns = engine.network.output_shape
        data_out = transfer(events) & ~out.end_of_frame
        with m.If(events.valid & ~out.end_of_frame):
            m.d.comb += [
                Assert(v["fired"], "no event out in a frame none of whose samples fired"),
                Assert((out.channel < channels) & (out.y < rows) & (out.x < columns),
                       "event inside the output map"),
            ]
        emitted = assert_once_a_frame(m, events, v["eof_out"], (channels, rows, columns))
        m.d.comb += [
            Cover(data_out, "an event out"),
            Cover(v["eof_out"] & (emitted != 0), "a frame's end of frame after its events"),
        ]


def _submodule(dut, name):
    """A block the engine makes in ``elaborate`` (a register slice)."""
    return dut.block_at(name)


def _valid_drops(dut):
    # events.valid falls for a cycle after a cycle not taken (the beat stays in the register).
    engine = dut.block
    waited = Signal(name="bug_waited")
    valid = _submodule(dut, "output_register").o.valid & ~dut["priming"]
    return {"sync": [waited.eq(engine.events.valid & ~engine.events.ready)],
            "comb": [engine.events.valid.eq(valid & ~waited)]}


def _twice(source, register):
    """``source``'s end of frame is loaded into the register slice ``register`` twice: the
    source is released only on the second load."""
    again = Signal(name="bug_again")
    end = source.valid & source.payload.end_of_frame
    return {"sync": [again.eq(Mux(end & register.i.ready, ~again, again))],
            "comb": [source.ready.eq(register.i.ready & ~(end & ~again))]}


def _eof_twice(dut):
    return _twice(dut.block.layers[-1].output, _submodule(dut, "output_register"))


def _link_eof_twice(dut):
    return _twice(dut.block.layers[0].output, _submodule(dut, "link1"))


def _eof_dropped(dut):
    # After the priming frame the last layer's end of frame is taken but not loaded.
    last = dut.block.layers[-1].output
    drop = last.payload.end_of_frame & ~dut["priming"]
    return {"comb": [_submodule(dut, "output_register").i.valid.eq(last.valid & ~drop)]}


def _priming_shown(dut):
    # The priming frame is not swallowed: its end of frame (and events) reach events.
    engine, output = dut.block, _submodule(dut, "output_register")
    return {"comb": [engine.events.valid.eq(output.o.valid),
                     output.o.ready.eq(engine.events.ready)]}


def _detector_dense(dut):
    # The detector runs in dense mode whatever ``dense`` says: events without a change.
    return {"comb": [dut.block.detector.dense.eq(1)]}


#: Planted bugs, each a patch of the engine's top module: (what, patch).
BUGS = {
    "valid_drops": ("events.valid falls for a cycle after a cycle not taken", _valid_drops),
    "eof_twice": ("the last layer's end of frame is loaded into the output register twice",
                  _eof_twice),
    "eof_dropped": ("after priming, the last layer's end of frame is taken but not loaded "
                    "into the output register", _eof_dropped),
    "priming_shown": ("the priming frame is not swallowed at the output", _priming_shown),
    "detector_dense": ("the detector fires on every sample, event mode or not",
                       _detector_dense),
    "link_eof_twice": ("two layers: the first layer's end of frame is loaded into the link "
                       "twice", _link_eof_twice),
}
