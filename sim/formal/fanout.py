"""FanoutAddressGenerator: the update stream keeps the protocol; every event yields exactly its
in-frame taps x groups beats (an end of frame exactly one end-of-frame beat), in walk order,
each beat right for its event; no beat without an event.

How: ``owed`` counts the beats the events taken so far are owed (each event adds its count, from
its coordinates: in-frame rows x in-frame columns x groups, or 1 for an end of frame), ``given``
the beats transferred. The solver picks one event (``pick``, a free input, on any transfer): its
payload is kept, with ``owed`` before it (``start``); the beats numbered ``start`` to
``start + count - 1`` are its own. Each of them must carry the event's channel and delta, an
output position inside the frame that the tap maps back to the event's pixel (``tap = ky * K +
kx`` with ``y = ey + K//2 - ky``, ``x = ex + K//2 - kx``), a group below the group count, and a
(tap, group) pair above the one before: so, being as many as the in-frame (tap, group) pairs,
they are each of them once. Since the picked event is any event, that is every event.

No beat is valid while no beat is owed, and with ``updates.ready`` high and no event offered,
every beat owed is given within (2 K^2 groups + 1) cycles: none is lost or held back.

Proven by induction (2 steps). The lemmas (invariants over the fan-out's registers, checked
too, and left out when a planted bug is run) are what the fan-out holds: the decoded event and
the walk's registers are consistent (``owed - given`` = the beats of the decoded event + the
beats the walk has left), and, while the picked event is decoded or walked, its registers are
that event's.
"""

from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Cover, Module, Mux, Signal, Value

from eventconv.hw.layer.fanout import FanoutAddressGenerator
from eventconv.sim.formal.harness import (
    Opened,
    assert_stream,
    assume_stream,
    free,
    proof_module,
    quiet_cycles,
    transfer,
)

__all__ = ["FanoutProof", "BUGS", "buggy_fanout"]

#: Beat counters: twice the beats of the largest event and then some.
COUNT_WIDTH = 10


def _lemma(test, message):
    return Assert(test, f"lemma: {message}")


class _Geometry:
    def __init__(self, h, w, k, groups):
        self.h, self.w, self.k, self.groups, self.pad = h, w, k, groups, k // 2

    def top(self, value, size):
        """The first (highest) output coordinate of an input coordinate: min(v + pad, size-1)."""
        return Mux(value > size - 1 - self.pad, size - 1, value + self.pad)

    def bottom(self, value):
        return Mux(value >= self.pad, value - self.pad, 0)

    def cut(self, value, size):
        return Mux(value > size - 1 - self.pad, value - (size - 1 - self.pad), 0)

    def beats(self, eof, top_y, bottom_y, top_x, bottom_x):
        return Mux(eof, 1, (top_y - bottom_y + 1) * (top_x - bottom_x + 1) * self.groups)


class FanoutProof:
    """Builds the proof of a :class:`FanoutAddressGenerator` of the given geometry (``block()``:
    a mutant of that geometry instead). ``lemmas=False``: the stated properties alone."""

    def __init__(self, *, height=4, width=4, kernel_size=3, channels_in=2, channels_out=2,
                 lanes=1, block=None, lemmas=True):
        self.lemmas = lemmas
        self.params = dict(height=height, width=width, kernel_size=kernel_size,
                           channels_in=channels_in, channels_out=channels_out, lanes=lanes)
        self.block = block

    def __call__(self):
        p = self.params
        block = self.block() if self.block else FanoutAddressGenerator(**p)
        h, w, k = p["height"], p["width"], p["kernel_size"]
        groups = p["channels_out"] // p["lanes"]
        g = _Geometry(h, w, k, groups)
        most = 2 * k * k * groups       # beats owed at most: one event walked, one decoded
        m, clk = proof_module()
        m.submodules.dut = dut = Opened(block)
        events, updates = block.events, block.updates
        event, beat = events.payload, updates.payload
        free(m, [events.valid, events.payload, updates.ready])
        assume_stream(m, events, "events")
        assert_stream(m, updates, "updates")
        m.d.comb += [Assume(event.y < h), Assume(event.x < w),
                     Assume(event.channel < p["channels_in"])]

        # Beats owed to the events taken, beats given.
        owed = Signal(COUNT_WIDTH, name="owed")
        given = Signal(COUNT_WIDTH, name="given")
        event_beats = g.beats(event.end_of_frame, g.top(event.y, h), g.bottom(event.y),
                              g.top(event.x, w), g.bottom(event.x))
        with m.If(transfer(events)):
            m.d.sync += owed.eq(owed + event_beats)
        with m.If(transfer(updates)):
            m.d.sync += given.eq(given + 1)
        outstanding = Signal(COUNT_WIDTH, name="outstanding")
        m.d.comb += outstanding.eq(owed - given)
        # Drain: cycles in a row with updates.ready high and no event offered.
        quiet = quiet_cycles(m, updates.ready & ~events.valid, most + 2)
        m.d.comb += [
            Assert(~updates.valid | (outstanding != 0), "no beat without an event"),
            Assert((outstanding == 0) | (outstanding + quiet <= most + 1),
                   "none lost: every beat owed is given within (beats owed + 1) cycles of "
                   "ready"),
        ]

        # The picked event and its beats: given numbers start .. start + count - 1.
        pick = AnySeq(1)
        live = Signal(name="live")          # picked, and not all its beats given
        picked = Signal(name="picked")      # one was picked (only one is)
        ev = Signal.like(event, name="ev")
        start = Signal(COUNT_WIDTH, name="start")
        count = Signal(COUNT_WIDTH, name="count")
        with m.If(transfer(events) & pick & ~picked):
            m.d.sync += [picked.eq(1), live.eq(1), ev.eq(event), start.eq(owed),
                         count.eq(event_beats)]
        done = Signal(COUNT_WIDTH, name="done")     # its beats given so far
        m.d.comb += done.eq(given - start)
        current = live & (done < count)             # the beat offered would be its own
        with m.If(transfer(updates) & current & (done == count - 1)):
            m.d.sync += live.eq(0)
        key = Signal(COUNT_WIDTH, name="key")
        m.d.comb += key.eq(beat.tap * groups + beat.group)
        last_key = Signal(COUNT_WIDTH, name="last_key")
        with m.If(transfer(updates) & current):
            m.d.sync += last_key.eq(key)
        with m.If(transfer(updates) & current):
            self._beat_checks(m, g, ev, beat, key, last_key, done)

        m.d.comb += [
            Cover(transfer(updates) & current & (done == count - 1) & (count == k * k * groups),
                  "every beat of an interior event given"),
            Cover(transfer(updates) & current & beat.end_of_frame, "an end-of-frame beat given"),
        ]
        if self.lemmas:
            self._lemmas(m, g, dut, p, locals())
        return m, clk

    @staticmethod
    def _beat_checks(m, g, ev, beat, key, last_key, done):
        """A beat of the picked event is right for it: fields, position, tap, ascending."""
        h, w, k = g.h, g.w, g.k
        m.d.comb += [
            Assert(beat.end_of_frame == ev.end_of_frame, "end of frame of the event"),
            Assert(beat.channel == Mux(ev.end_of_frame, 0, ev.channel), "channel"),
            Assert(beat.delta == Mux(ev.end_of_frame, 0, ev.delta), "delta"),
            Assert((done == 0) | (key > last_key), "(tap, group) ascending"),
        ]
        with m.If(ev.end_of_frame):
            m.d.comb += Assert((beat.y == 0) & (beat.x == 0) & (beat.tap == 0)
                               & (beat.group == 0), "end-of-frame beat: fields 0")
        with m.Else():
            ky = ev.y + g.pad - beat.y
            kx = ev.x + g.pad - beat.x
            m.d.comb += [
                Assert((beat.y < h) & (beat.x < w), "inside the frame"),
                Assert((ky >= 0) & (ky < k) & (kx >= 0) & (kx < k), "a tap of the kernel"),
                Assert(beat.tap == ky * k + kx, "tap matches position"),
                Assert(beat.group < g.groups, "group"),
            ]

    def _lemmas(self, m, g, dut, p, v):
        """Invariants over the fan-out's registers that make the checks above inductive."""
        h, w, k, groups = g.h, g.w, g.k, g.groups
        d = {name: dut[name] for name in (
            "decoded", "decoded_eof", "decoded_channel", "decoded_delta", "first_y", "first_x",
            "last_y", "last_x", "first_tap", "single_row", "single_col")}
        wk = {name: dut[name] for name in (
            "busy", "y", "x", "x_first", "x_last", "y_last", "tap", "row_tap", "group",
            "channel", "delta", "end_of_frame", "x_stop", "y_stop", "single_column",
            "x_at_end", "y_at_end", "last_beat", "next_group", "next_column", "next_row")}
        decoded_beats = Signal(COUNT_WIDTH, name="decoded_beats")
        m.d.comb += decoded_beats.eq(Mux(d["decoded"], g.beats(
            d["decoded_eof"], d["first_y"], d["last_y"], d["first_x"], d["last_x"]), 0))
        columns = wk["x_first"] - wk["x_last"] + 1
        walk_left = Signal(COUNT_WIDTH, name="walk_left")
        m.d.comb += walk_left.eq(Mux(wk["busy"], Mux(
            wk["end_of_frame"], 1,
            ((wk["y"] - wk["y_last"]) * columns + (wk["x"] - wk["x_last"])) * groups
            + (groups - wk["group"])), 0))
        outstanding, quiet, most = v["outstanding"], v["quiet"], v["most"]
        m.d.comb += [
            Assert(outstanding == decoded_beats + walk_left,
                   "lemma: beats owed - given = beats decoded + beats left in the walk"),
            Assert((quiet == 0) | (outstanding == 0) | wk["busy"],
                   "lemma: walking after a cycle of ready"),
            Assert(outstanding <= most, "lemma: beats owed at most"),
            Assert(~wk["busy"] | wk["end_of_frame"]
                   | (walk_left + wk["group"] <= (k * k - wk["tap"]) * groups),
                   "lemma: the walk's beats left map to taps from its tap on"),
        ]
        self._consistency(m, g, d, wk)

        live, picked, ev, start, count, done = (v[name] for name in (
            "live", "picked", "ev", "start", "count", "done"))
        beat, key, last_key = v["beat"], v["key"], v["last_key"]
        ev_top_y, ev_top_x = g.top(ev.y, h), g.top(ev.x, w)
        ev_bottom_y, ev_bottom_x = g.bottom(ev.y), g.bottom(ev.x)
        ev_beats = g.beats(ev.end_of_frame, ev_top_y, ev_bottom_y, ev_top_x, ev_bottom_x)
        end = Signal(COUNT_WIDTH, name="end")       # beat number after its last
        ahead = Signal(COUNT_WIDTH, name="ahead")   # beats before its first still to give
        m.d.comb += [end.eq(start + count), ahead.eq(start - v["given"])]
        in_walk = live & wk["busy"] & (done < count)
        in_decode = live & ~in_walk
        m.d.comb += [
            Assert(~live | picked, "lemma: live only once picked"),
            Assert(~picked | (ev.y < h) & (ev.x < w) & (ev.channel < p["channels_in"]),
                   "lemma: the picked event is one the input may give"),
            Assert(~live | (count == ev_beats), "lemma: count of the picked event"),
            Assert(~in_decode | d["decoded"] & (v["owed"] == end) & (ahead == walk_left),
                   "lemma: the picked event is walked or decoded"),
        ]
        with m.If(in_walk):
            # What the checks at its transfer need, in every cycle it is offered.
            self._beat_checks(m, g, ev, beat, key, last_key, done)
            m.d.comb += [
                Assert(walk_left == count - done, "lemma: beats left of the picked event"),
                Assert(wk["x_first"] == ev_top_x, "lemma: walk x_first"),
                Assert(wk["x_last"] == ev_bottom_x, "lemma: walk x_last"),
                Assert(wk["y_last"] == ev_bottom_y, "lemma: walk y_last"),
            ]
            with m.If(~ev.end_of_frame):
                m.d.comb += [
                    Assert(wk["row_tap"] == (ev.y + g.pad - beat.y) * k
                           + (ev.x + g.pad - ev_top_x), "lemma: walk row_tap"),
                    Assert(beat.y <= ev_top_y, "lemma: walk y below the top"),
                ]
        with m.If(in_decode):
            m.d.comb += [
                Assert(d["decoded_eof"] == ev.end_of_frame, "lemma: decoded eof"),
                Assert(d["decoded_channel"] == Mux(ev.end_of_frame, 0, ev.channel),
                       "lemma: decoded channel"),
                Assert(d["decoded_delta"] == Mux(ev.end_of_frame, 0, ev.delta),
                       "lemma: decoded delta"),
                Assert(d["first_y"] == ev_top_y, "lemma: decoded first_y"),
                Assert(d["first_x"] == ev_top_x, "lemma: decoded first_x"),
                Assert(d["last_y"] == ev_bottom_y, "lemma: decoded last_y"),
                Assert(d["last_x"] == ev_bottom_x, "lemma: decoded last_x"),
                Assert(d["first_tap"] == g.cut(ev.y, h) * k + g.cut(ev.x, w),
                       "lemma: decoded first_tap"),
            ]

    @staticmethod
    def _consistency(m, g, d, wk):
        """What the decode and walk registers always satisfy."""
        h, w, groups = g.h, g.w, g.groups
        with m.If(d["decoded"]):
            m.d.comb += [
                _lemma((d["last_y"] <= d["first_y"]) & (d["first_y"] < h), "decoded rows"),
                _lemma((d["last_x"] <= d["first_x"]) & (d["first_x"] < w), "decoded columns"),
                _lemma((d["first_y"] - d["last_y"] < g.k) & (d["first_x"] - d["last_x"] < g.k),
                       "decoded: at most K rows and columns"),
                _lemma(d["single_row"] == (d["first_y"] == d["last_y"]), "single_row"),
                _lemma(d["single_col"] == (d["first_x"] == d["last_x"]), "single_col"),
                _lemma(d["first_tap"] + g.k * (d["first_y"] - d["last_y"])
                       + (d["first_x"] - d["last_x"]) < g.k * g.k, "decoded taps in the kernel"),
                _lemma(~d["decoded_eof"] | (d["decoded_channel"] == 0)
                       & (d["decoded_delta"] == 0), "decoded end of frame: fields 0"),
            ]
        kinds = Value.cast(wk["last_beat"]) + wk["next_group"] + wk["next_column"] \
            + wk["next_row"]
        with m.If(wk["busy"]):
            m.d.comb += _lemma(kinds == 1, "one step kind")
            with m.If(wk["end_of_frame"]):
                m.d.comb += [
                    _lemma(wk["last_beat"], "end of frame: one beat"),
                    _lemma((wk["y"] == 0) & (wk["x"] == 0) & (wk["tap"] == 0)
                           & (wk["group"] == 0) & (wk["channel"] == 0) & (wk["delta"] == 0),
                           "end-of-frame beat: fields 0"),
                ]
            with m.Else():
                last_group = wk["group"] == groups - 1
                m.d.comb += [
                    _lemma((wk["x_last"] <= wk["x"]) & (wk["x"] <= wk["x_first"])
                           & (wk["x_first"] < w), "walk x range"),
                    _lemma((wk["y_last"] <= wk["y"]) & (wk["y"] < h), "walk y range"),
                    _lemma(wk["group"] < groups, "walk group range"),
                    _lemma((wk["x_first"] - wk["x_last"] < g.k) & (wk["y"] - wk["y_last"] < g.k),
                           "walk: at most K rows and columns"),
                    _lemma(wk["x_stop"] == wk["x_last"] + 1, "x_stop"),
                    _lemma(wk["y_stop"] == wk["y_last"] + 1, "y_stop"),
                    _lemma(wk["x_at_end"] == (wk["x"] == wk["x_last"]), "x_at_end"),
                    _lemma(wk["y_at_end"] == (wk["y"] == wk["y_last"]), "y_at_end"),
                    _lemma(wk["single_column"] == (wk["x_first"] == wk["x_last"]),
                           "single_column"),
                    _lemma(wk["next_group"] == ~last_group, "next_group"),
                    _lemma(wk["last_beat"] == (last_group & wk["x_at_end"] & wk["y_at_end"]),
                           "last_beat"),
                    _lemma(wk["next_column"] == (last_group & ~wk["x_at_end"]), "next_column"),
                    _lemma(wk["next_row"] == (last_group & wk["x_at_end"] & ~wk["y_at_end"]),
                           "next_row"),
                    _lemma(wk["tap"] == wk["row_tap"] + (wk["x_first"] - wk["x"]), "tap in row"),
                    _lemma(wk["row_tap"] + g.k * (wk["y"] - wk["y_last"])
                           + (wk["x_first"] - wk["x_last"]) < g.k * g.k,
                           "walk taps in the kernel"),
                ]


#: Planted bugs: subclasses of FanoutAddressGenerator, each a small change.
BUGS = {
    "skips_last_row": "the walk ends after the last column of the second-to-last row",
    "eof_taps": "an end of frame is walked like an event (its taps, not one beat)",
    "drops_on_load": "the next event is loaded while the last beat is still offered",
}


def buggy_fanout(bug, **params):
    """A FanoutAddressGenerator with ``bug`` (a key of :data:`BUGS`) planted."""

    class SkipsLastRow(FanoutAddressGenerator):
        def _walk(self, m, walk, decoded, load):
            super()._walk(m, walk, decoded, load)
            # The walk stops where the next row would be the last one.
            with m.If(~load & self.updates.valid & self.updates.ready & walk.next_row
                      & (walk.y == walk.y_stop)):
                m.d.sync += walk.busy.eq(0)

    class EofTaps(FanoutAddressGenerator):
        def _walk(self, m, walk, decoded, load):
            super()._walk(m, walk, decoded, load)
            # An end of frame gets the step kinds of an event at its (in-range) pixel.
            with m.If(load & decoded["eof"]):
                self._set_kind(m, walk, self._after_position(decoded["single_col"],
                                                             decoded["single_row"]))

    class DropsOnLoad(FanoutAddressGenerator):
        def elaborate(self, platform):
            # FanoutAddressGenerator.elaborate, but the next event replaces the last beat
            # without waiting for it to be taken.
            m = Module()
            load = Signal()
            decoded = self._decode(m, load)
            walk = self._walk_state(m)
            self._walk(m, walk, decoded, load)
            m.d.comb += [
                load.eq(decoded["valid"] & (~walk.busy | walk.last_beat)),
                self.events.ready.eq(~decoded["valid"] | load),
            ]
            return m

    chosen = {"skips_last_row": SkipsLastRow, "eof_taps": EofTaps,
              "drops_on_load": DropsOnLoad}[bug]
    return chosen(**params)
