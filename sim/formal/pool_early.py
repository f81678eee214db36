"""SparseMaxPool with early evaluation (``row_slack``, the generic target's own read port),
bounded (``bmc``) from reset: no window is read before a later beat touches it in its frame,
and by the frame's ``read.done`` every window touched in it (in the first frame after reset:
all) has been read once per group; the ``events`` stream keeps the protocol.

How: the solver drives ``touched`` (the stream rule assumed) under the rule the engine's
order keeps (:func:`~eventconv.hw.layer.layer.pool_row_slack`): a window's row is at least the
highest row touched earlier in the frame minus ``row_slack``. The accumulators are any word,
chosen anew after each ``read.en`` and held while it is low (the pool's own port). A frame's
reads run from the ``done`` of the frame before to its own; ``touched`` is closed from a
frame's end of frame to its ``done``, so the beats in between are the frame's. A read before
a later touch would have taken a word that later updates change: the frame's result would
miss them.
"""

from dataclasses import replace

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Cover, Mux, Signal, Value

from eventconv.hw.target import ECP5, GENERIC
from eventconv.sim.formal.harness import (
    Opened,
    assert_stream,
    assume_stream,
    free,
    proof_module,
    transfer,
)
from eventconv.sim.formal.sparse_max_pool import Shared

__all__ = ["EarlyPoolProof", "BUGS", "GEOMETRIES", "TARGETS", "ECP5_POOL_PORT"]

#: The ECP5's RAM registers with the pool's own port: no board builds it yet (hw/target.py).
ECP5_POOL_PORT = replace(ECP5, name="ecp5-pool-port", pool_read_port=True)
TARGETS = {"generic": GENERIC, "ecp5": ECP5_POOL_PORT}

#: Pools of three window rows (``row_slack`` 1 makes the first row final once the third is
#: touched).
GEOMETRIES = {
    "6x2": dict(height=6, width=2, channels_out=1, lanes=1, pool=2),
    "6x2_groups2": dict(height=6, width=2, channels_out=2, lanes=1, pool=2),
    "6x4": dict(height=6, width=4, channels_out=1, lanes=1, pool=2),
    "6x2_pool1": dict(height=6, width=2, channels_out=1, lanes=1, pool=1),
}


class EarlyPoolProof:
    """The proof for a pool of ``geometry`` (a key of :data:`GEOMETRIES`) with ``row_slack``;
    ``patch`` plants a bug (see :data:`BUGS`)."""

    def __init__(self, geometry="6x2", *, target="generic", row_slack=1, patch=None):
        self.params = dict(GEOMETRIES[geometry], accumulator_width=4, target=TARGETS[target],
                           row_slack=row_slack)
        self.patch = patch

    def __call__(self):
        block = Shared(**self.params)
        m, clk = proof_module()
        m.submodules.dut = dut = Opened(block, patch=self.patch)
        touched, events, read = block.touched, block.events, block.read
        window = touched.payload
        free(m, [touched.valid, touched.payload, events.ready])
        m.d.comb += [block.shift.eq(AnyConst(5)), block.output_threshold.eq(AnyConst(8)),
                     block.dense.eq(AnyConst(1))]
        assume_stream(m, touched, "touched")
        assert_stream(m, events, "events")
        self._slack_rule(m, block)
        word = Signal(len(Value.cast(read.data)), name="ram_word")
        with m.If(read.en):
            m.d.sync += word.eq(AnySeq(len(word)))
        m.d.comb += Value.cast(read.data).eq(word)

        groups, windows, columns = block.groups, block.windows, block.width // 2
        reads = Signal(groups * windows, name="reads")
        listed = Signal(windows, name="listed", init=(1 << windows) - 1)   # reset: all
        ended = Signal(name="ended")        # the frame's end of frame taken, done not yet
        beat = transfer(touched) & ~window.end_of_frame
        index = window.y * columns + window.x
        with m.If(read.done):
            m.d.sync += [reads.eq(0), listed.eq(0), ended.eq(0)]
        with m.Else():
            with m.If(read.en):
                m.d.sync += reads.eq(reads | (1 << read.addr))
            with m.If(beat):
                m.d.sync += listed.eq(listed | (1 << index))
            with m.If(transfer(touched) & window.end_of_frame):
                m.d.sync += ended.eq(1)
        with m.If(beat):
            for g in range(groups):
                m.d.comb += Assert(~reads.bit_select(g * windows + index, 1),
                                   "no window read before a later touch in its frame")
        now = reads | Mux(read.en, 1 << read.addr, 0)
        with m.If(read.done):
            m.d.comb += [
                Assert(now == listed.replicate(groups),
                       "by done: the frame's windows touched x groups read"),
                Assert(~dut["end_pending"],
                       "done only once the frame before's end of frame is loaded (one end "
                       "of frame per frame)"),
            ]
        m.d.comb += Cover(read.en & ~ended & (listed != (1 << windows) - 1),
                          "a window read while its frame still runs")
        return m, clk

    @staticmethod
    def _slack_rule(m, block):
        """Assume: a touched window's row is at least the frame's highest so far minus the
        slack."""
        touched, window = block.touched, block.touched.payload
        highest = Signal(range(block.height // 2), name="highest")
        seen = Signal(name="seen")
        with m.If(transfer(touched)):
            with m.If(window.end_of_frame):
                m.d.sync += [highest.eq(0), seen.eq(0)]
            with m.Elif(~seen | (window.y > highest)):
                m.d.sync += [highest.eq(window.y), seen.eq(1)]
        with m.If(touched.valid & ~window.end_of_frame):
            m.d.comb += [Assume(window.y < block.height // 2),
                         Assume(window.x < block.width // 2),
                         Assume(~seen | (window.y + block.row_slack >= highest))]


def _no_slack(dut):
    # The final rows are the highest collected row itself: the rows just below it are read
    # although a later beat may still touch them.
    s = dut.block.shared
    decide, final = s.decide, dut["final_rows"]
    row = decide["window"].y
    raise_ = decide["valid"] & ~decide["end"] & (row > final)
    return {"sync": [final.eq(Mux(s.done, 0, Mux(raise_, row, final)))]}


#: Planted bugs: (what, patch).
BUGS = {
    "no_slack": ("rows final without the slack (read before a later touch)", _no_slack),
}
