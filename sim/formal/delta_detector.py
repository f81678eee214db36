"""DeltaDetector: the event stream keeps the protocol; each input beat yields exactly the events
of its samples that fire (``|x - r| > T``, or every sample in dense mode), in lane order, with
the right channel, position and delta against a reference the proof keeps itself, and a frame's
``last`` beat then exactly one end-of-frame beat; no beat without a cause; none lost. Bounded
(``bmc``): the detector's pipeline, queue and credits have no invariants written here.

How: the proof keeps its own reference frame (all words, in registers) and frame position,
updated as beats are taken (SPEC step 1, :func:`eventconv.core.model.detect_events`), and counts
the output beats each taken beat is owed (its firing samples, plus one if ``last``). The solver
picks one taken beat; the output beats numbered from the beats owed before it must be its
events, then its end of frame. ``threshold`` and ``dense`` are constants the solver picks (the
block samples them per beat; the contract is to change them between frames only).
"""

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Array, Assert, Assume, Cat, Const, Cover, Mux, Signal, Value
from amaranth.lib import data

from eventconv.hw.layer.delta_detector import DeltaDetector
from eventconv.hw.layouts import DELTA_SHAPE
from eventconv.sim.formal.harness import (
    Opened,
    assert_stream,
    assume_stream,
    free,
    proof_module,
    quiet_cycles,
    transfer,
)

__all__ = ["DeltaDetectorProof", "BUGS", "VARIANTS"]

COUNT_WIDTH = 8
#: Proof variants: "frames" (any data: ends of frame, order), "dense" (dense mode, any data:
#: every event), "event" (event mode, samples and threshold below SMALL: every event).
VARIANTS = ("frames", "dense", "event")
SMALL = 4


class DeltaDetectorProof:
    """Builds the bounded proof of a :class:`DeltaDetector` of one of :data:`VARIANTS`
    (``patch``: a planted bug, see :data:`BUGS`)."""

    def __init__(self, *, height=2, width=2, channels=1, pixels_per_cycle=1, variant="frames",
                 patch=None):
        if variant not in VARIANTS:
            raise ValueError(variant)
        self.params = dict(height=height, width=width, channels=channels,
                           pixels_per_cycle=pixels_per_cycle)
        self.variant = variant
        self.patch = patch

    def __call__(self):
        p = self.params
        block = DeltaDetector(**p)
        h, w, c, lanes = p["height"], p["width"], p["channels"], p["pixels_per_cycle"]
        depth = c * h * w // lanes
        m, clk = proof_module()
        m.submodules.dut = Opened(block, patch=self.patch)
        pixels, events = block.pixels, block.events
        beat, out = pixels.payload, events.payload
        free(m, [pixels.valid, pixels.payload, events.ready])
        threshold, dense = AnyConst(8), AnyConst(1)
        m.d.comb += [block.threshold.eq(threshold), block.dense.eq(dense)]
        assume_stream(m, pixels, "pixels")
        assert_stream(m, events, "events")
        if self.variant == "dense":
            m.d.comb += Assume(dense)
        elif self.variant == "event":
            m.d.comb += [Assume(~dense), Assume(threshold < SMALL)]
            m.d.comb += [Assume(beat.data[j] < SMALL) for j in range(lanes)]

        # The frame position and reference, as the contract defines them.
        position = Signal(range(depth), name="position")
        word = Signal(range(depth), name="word")
        m.d.comb += word.eq(Mux(beat.first, 0, position))
        with m.If(transfer(pixels)):
            m.d.sync += position.eq(Mux(beat.last | (word == depth - 1), 0, word + 1))
        # Whole frames: ``first`` only where a frame starts anyway, and a frame's last sample
        # (or an earlier one, a short frame) has ``last``: no abandoned or wrapped frame.
        with m.If(pixels.valid):
            m.d.comb += [Assume(~beat.first | (position == 0)),
                         Assume((position != depth - 1) | beat.last)]
        # Drain: the queue and stages hold at most (queue + 3) beats of (lanes + 1) items each.
        drain = block.LATENCY + (block.queue_depth + 3) * (lanes + 1) + 2
        quiet = quiet_cycles(m, events.ready & ~pixels.valid, drain + 1)

        if self.variant == "frames":
            self._frames(m, block, beat, out, quiet, drain, h, w, c)
        else:
            self._events(m, block, beat, out, word, quiet, drain, threshold, dense, p)
        return m, clk

    @staticmethod
    def _frames(m, block, beat, out, quiet, drain, h, w, c):
        """Any data, any threshold: one end of frame per ``last`` beat, none else, none lost;
        within a frame the events in raster order, each sample at most once."""
        pixels, events = block.pixels, block.events
        owed = Signal(COUNT_WIDTH, name="frames_owed")
        given = Signal(COUNT_WIDTH, name="frames_given")
        with m.If(transfer(pixels) & beat.last):
            m.d.sync += owed.eq(owed + 1)
        with m.If(transfer(events) & out.end_of_frame):
            m.d.sync += given.eq(given + 1)
        outstanding = Signal(COUNT_WIDTH, name="frames_outstanding")
        m.d.comb += outstanding.eq(owed - given)
        m.d.comb += [
            Assert(~(events.valid & out.end_of_frame) | (outstanding != 0),
                   "no end of frame without a last beat"),
            Assert((quiet < drain) | (outstanding == 0),
                   f"none lost: every end of frame given after {drain} cycles of ready "
                   "without input"),
        ]
        index = Signal(range(c * h * w + 1), name="sample_index")
        m.d.comb += index.eq((out.y * w + out.x) * c + out.channel)
        last_index = Signal(range(c * h * w + 1), name="last_index")
        seen = Signal(name="seen")     # an event of the frame given
        with m.If(transfer(events)):
            m.d.sync += [seen.eq(~out.end_of_frame), last_index.eq(index)]
            with m.If(~out.end_of_frame):
                m.d.comb += [
                    Assert((out.y < h) & (out.x < w) & (out.channel < c), "event position"),
                    Assert(~seen | (index > last_index),
                           "events of a frame in raster order, each sample once"),
                ]
            with m.Else():
                m.d.comb += Assert((out.channel == 0) & (out.y == 0) & (out.x == 0)
                                   & (out.delta == 0), "end of frame: other fields 0")
        m.d.comb += Cover(transfer(events) & out.end_of_frame & seen & (outstanding == 2),
                          "an end of frame after events, another frame waiting")

    @staticmethod
    def _events(m, block, beat, out, word, quiet, drain, threshold, dense, p):
        """Every beat's events: its firing samples against the reference, then its end of
        frame (dense mode, any data; event mode: data and threshold below SMALL)."""
        h, w, c, lanes = p["height"], p["width"], p["channels"], p["pixels_per_cycle"]
        depth = c * h * w // lanes
        pixels, events = block.pixels, block.events
        reference = [[Signal(8, name=f"reference_{i}_{j}") for j in range(lanes)]
                     for i in range(depth)]
        fire = Signal(lanes, name="fire")
        deltas = Signal(data.ArrayLayout(DELTA_SHAPE, lanes), name="deltas")
        for j in range(lanes):
            current = Array(reference[i][j] for i in range(depth))[word]
            delta = beat.data[j] - current
            m.d.comb += [deltas[j].eq(delta),
                         fire[j].eq(dense | (delta > threshold) | (-delta > threshold))]
        with m.If(transfer(pixels)):
            for i in range(depth):
                for j in range(lanes):
                    with m.If((word == i) & fire[j]):
                        m.d.sync += reference[i][j].eq(beat.data[j])

        # What the beat is owed: its firing samples' events in lane order, then end of frame.
        layout = out.shape()
        channel_of = Array(Const(n % c) for n in range(depth * lanes))
        x_of = Array(Const(n // c % w) for n in range(depth * lanes))
        y_of = Array(Const(n // c // w) for n in range(depth * lanes))
        items = [Signal(layout, name=f"item_{k}") for k in range(lanes + 1)]
        fired = Const(0, range(lanes + 1))
        for k in range(lanes + 1):
            m.d.comb += [items[k].end_of_frame.eq(1)]
        for j in range(lanes):
            n = word * lanes + j
            with m.If(fire[j]):
                for k in range(lanes):
                    with m.If(fired == k):
                        m.d.comb += [items[k].end_of_frame.eq(0),
                                     items[k].channel.eq(channel_of[n]),
                                     items[k].y.eq(y_of[n]), items[k].x.eq(x_of[n]),
                                     items[k].delta.eq(deltas[j])]
            fired = fired + fire[j]
        beat_count = Signal(range(lanes + 2), name="beat_count")
        m.d.comb += beat_count.eq(fired + beat.last)

        owed = Signal(COUNT_WIDTH, name="owed")
        given = Signal(COUNT_WIDTH, name="given")
        with m.If(transfer(pixels)):
            m.d.sync += owed.eq(owed + beat_count)
        with m.If(transfer(events)):
            m.d.sync += given.eq(given + 1)
        outstanding = Signal(COUNT_WIDTH, name="outstanding")
        m.d.comb += outstanding.eq(owed - given)
        m.d.comb += [
            Assert(~events.valid | (outstanding != 0), "no event without a beat that owes it"),
            Assert((quiet < drain) | (outstanding == 0),
                   f"none lost: all given after {drain} cycles of ready without input"),
        ]

        # The picked beat: the output beats numbered from ``start`` are its items.
        pick = AnySeq(1)
        picked = Signal(name="picked")
        live = Signal(name="live")
        start = Signal(COUNT_WIDTH, name="start")
        count = Signal(range(lanes + 2), name="count")
        expected = [Signal(layout, name=f"expected_{k}") for k in range(lanes + 1)]
        with m.If(transfer(pixels) & pick & ~picked & (beat_count != 0)):
            m.d.sync += [picked.eq(1), live.eq(1), start.eq(owed), count.eq(beat_count)]
            m.d.sync += [expected[k].eq(items[k]) for k in range(lanes + 1)]
        done = Signal(COUNT_WIDTH, name="done")
        m.d.comb += done.eq(given - start)
        own = live & (done < count)
        with m.If(transfer(events) & own):
            with m.If(done == count - 1):
                m.d.sync += live.eq(0)
            m.d.comb += Assert(Value.cast(out) == Array(expected)[done],
                               "the picked beat's events, then its end of frame, in order")
        m.d.comb += Cover(transfer(events) & own & (done == count - 1) & (count == lanes + 1),
                          "a last beat whose samples all fired, all given")


def _no_eof(dut):
    return {"sync": [dut["s3_end"].eq(0)]}


def _queue_stuck(dut):
    return {"sync": [dut["queue_write"].eq(dut["queue_write"])]}


def _threshold_ge(dut):
    # Also fires where |d| == T.
    lanes = len(dut["fire"])
    delta = data.View(data.ArrayLayout(DELTA_SHAPE, lanes), dut["s2_delta"])
    threshold = dut["threshold"]
    equal = Cat(*[(delta[j] == threshold) | (-delta[j] == threshold) for j in range(lanes)])
    return {"comb": [dut["fire"].eq(Mux(dut["s2_dense"], (1 << lanes) - 1,
                                         dut["s2_below"] | dut["s2_above"] | equal))]}


#: Planted bugs, each a patch of one DeltaDetector register or signal: (what, patch).
BUGS = {
    "no_eof": ("the end-of-frame beat is never emitted", _no_eof),
    "queue_stuck": ("the queue's write pointer never moves (queued beats overwritten)",
                    _queue_stuck),
    "threshold_ge": ("fires on |d| >= T instead of |d| > T", _threshold_ge),
}
