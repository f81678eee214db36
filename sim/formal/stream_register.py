"""StreamRegister: the output keeps the stream protocol, and every beat taken comes out once, in
order, unchanged; none comes out without one taken; none is lost (after two cycles of ``ready``
without input the slice is empty). Proven by induction (any input and ready pattern the solver
picks, the input keeping the protocol).

How: ``count_in`` and ``count_out`` count transfers (wrapping, 4 bits). The solver picks one
beat, number ``index`` (``AnyConst``), and its payload ``value``: the input's beat ``index``
is assumed to carry ``value``, and the output's beat ``index`` must carry it. Because index and
value are arbitrary, that is every beat. The lemmas (invariants over the slice's registers)
that make it inductive: the slice holds ``count_in - count_out`` = ``o.valid + skid_valid``
beats, the skid register is full only behind a full output register, and beat ``index``, while
inside, sits in the output register (the older) or the skid register (the younger) with its
value."""

from amaranth.asserts import AnyConst
from amaranth.hdl import Assert, Assume, Cover, Module, Signal, Value, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from eventconv.hw.primitives.stream_register import StreamRegister
from eventconv.sim.formal.harness import (
    Counter,
    Opened,
    assert_stream,
    assume_stream,
    free,
    proof_module,
    transfer,
)

__all__ = ["StreamRegisterProof", "BuggyStreamRegister", "BUGS"]

COUNT_WIDTH = 4
#: A small payload: the proof does not depend on its width (event_layout is checked too).
PAYLOAD = unsigned(3)


class StreamRegisterProof:
    """Builds the proof of a :class:`StreamRegister` (or of ``block()``, a mutant).

    ``lemmas=False`` leaves out the invariants over its registers: what remains is the stated
    property alone, for a bounded check (a planted bug must break that, not just a lemma).
    """

    def __init__(self, layout=PAYLOAD, *, skid_loads_when_empty=False, block=None,
                 lemmas=True):
        self.lemmas = lemmas
        self.layout = layout
        self.skid_loads_when_empty = skid_loads_when_empty
        self.block = block

    def __call__(self):
        block = self.block() if self.block else StreamRegister(
            self.layout, skid_loads_when_empty=self.skid_loads_when_empty)
        m, clk = proof_module()
        m.submodules.dut = opened = Opened(block)
        skid_valid, skid_payload = opened["skid_valid"], opened["skid_payload"]
        i, o = block.i, block.o
        free(m, [i.valid, i.payload, o.ready])
        assume_stream(m, i, "i")
        assert_stream(m, o, "o")

        count_in = Counter(m, transfer(i), COUNT_WIDTH, name="count_in").value
        count_out = Counter(m, transfer(o), COUNT_WIDTH, name="count_out").value
        held = Signal(COUNT_WIDTH, name="held")
        m.d.comb += held.eq(count_in - count_out)
        # Drain: cycles in a row with o.ready high and nothing offered.
        quiet = Signal(2, name="quiet")
        with m.If(o.ready & ~i.valid):
            with m.If(quiet != 3):
                m.d.sync += quiet.eq(quiet + 1)
        with m.Else():
            m.d.sync += quiet.eq(0)
        m.d.comb += [
            Assert(~o.valid | (held != 0), "no beat without one taken"),
            Assert(held <= 2, "at most two beats held"),
            Assert((quiet < 2) | (held == 0), "none lost: empty after two cycles of ready"),
        ]
        if self.lemmas:
            m.d.comb += [
                Assert(held == o.valid + skid_valid, "lemma: beats held = o.valid + skid_valid"),
                Assert(~skid_valid | o.valid, "lemma: skid full only behind a full output"),
                Assert(i.ready == ~skid_valid, "lemma: ready while the skid register is free"),
                Assert((quiet == 0) | ~skid_valid, "lemma: skid empty after a cycle of ready"),
            ]

        index = AnyConst(COUNT_WIDTH)
        value = AnyConst(self.layout)
        with m.If(transfer(i) & (count_in == index)):
            m.d.comb += Assume(Value.cast(i.payload) == value)
        with m.If(transfer(o) & (count_out == index)):
            m.d.comb += Assert(Value.cast(o.payload) == value, "beat index comes out unchanged")
        # Where beat ``index`` is while inside: the output register, then the skid register.
        ahead = Signal(COUNT_WIDTH, name="ahead")
        m.d.comb += ahead.eq(index - count_out)
        if self.lemmas:
            with m.If(o.valid & (ahead == 0)):
                m.d.comb += Assert(Value.cast(o.payload) == value,
                                   "lemma: output register holds beat index")
            with m.If(skid_valid & (ahead == 1)):
                m.d.comb += Assert(Value.cast(skid_payload) == value,
                                   "lemma: skid register holds beat index")
        m.d.comb += [Cover(skid_valid & transfer(o), "two beats held, one leaving"),
                     Cover(transfer(o) & (count_out == index) & (index == 3),
                           "the picked beat out as the fourth")]
        return m, clk


#: Planted bugs, each a one-line change of StreamRegister.elaborate (see BuggyStreamRegister).
BUGS = {
    "skid_overwritten": "the skid register also loads while full (input not taken)",
    "ready_ignores_skid": "i.ready stays high while the skid register is full (a beat lost)",
    "output_overwritten": "the output register reloads while stalled (valid/payload change)",
}


class BuggyStreamRegister(wiring.Component):
    """A copy of :class:`StreamRegister` with one of :data:`BUGS` planted."""

    def __init__(self, layout, bug, *, skid_loads_when_empty=False):
        if bug not in BUGS:
            raise ValueError(bug)
        self.bug = bug
        self.skid_loads_when_empty = skid_loads_when_empty
        self.layout = layout
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    def elaborate(self, platform):
        m = Module()
        bug = self.bug
        skid_valid = Signal()
        skid_payload = Signal(self.layout)
        m.d.comb += self.i.ready.eq(1 if bug == "ready_ignores_skid" else ~skid_valid)
        may_load = 1 if bug == "output_overwritten" else (self.o.ready | ~self.o.valid)
        with m.If(may_load):
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
        if self.skid_loads_when_empty or bug == "skid_overwritten":
            with m.If(1 if bug == "skid_overwritten" else ~skid_valid):
                m.d.sync += skid_payload.eq(self.i.payload)
        return m
