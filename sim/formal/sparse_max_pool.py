"""SparseMaxPool: the ``events`` stream keeps the protocol; one ``end_of_frame`` beat on
``events`` per ``end_of_frame`` beat taken on ``touched``, in order, and no event beat while no
touched end of frame is outstanding; the accumulators are read only between a touched end of
frame and ``read.done``, pulsed once per frame, before the frame's end of frame on ``events``
(all proven by induction); and, bounded (``bmc``) from reset: an event only for a window
touched in its frame (every window in the first frame after reset), each (channel, y, x) at
most once per frame, the reads of a frame exactly its touched windows x groups; with
``events.ready`` held high, the frame's end of frame within the docstring's cycle counts.

How: the solver drives ``touched`` (any windows in the frame, any valid pattern, ends of frame;
the stream rule assumed), ``events.ready``, and ``shift``, ``output_threshold`` and ``dense`` (a
constant each: the contract changes them only between frames). The accumulators are modelled
as the read interface allows and no more: ``read.data`` is any word, chosen anew in the cycle
after each ``read.en`` and held while ``en`` is low (with ``target.ram_read_register`` the
accumulator unit's data register, loaded from that word with ``read.take``); outside the hold
(between a touched end of frame and ``done``) the words are anything, every cycle.

Counters count the ``end_of_frame`` beats taken on ``touched`` (``taken``) and given on
``events`` (``given``); ``holding`` is the accumulator unit's hold. A window bitmap per frame
in flight (four slots, by ``taken % 4``) records the windows given on ``touched`` in each frame
(the first slot starts full: the reset priming lists every window); the events given while
``given`` is k belong to frame k, the reads during the hold to frame ``taken - 1``.

The induction (``prove``) needs invariants over the pool's control registers (the lemmas,
checked too, and left out when a planted bug is run): the state flags are one-hot, the frames
outstanding are the ends of frame in the collection stages, ``starting``, ``issuing``,
``end_pending`` and the ``events`` register; the hold is the collection stages' end of frame,
``starting``, ``issuing`` or ``finishing``; ``pipeline_empty`` implies empty stages; work in the
pipeline, the result slots or a data event in ``events`` implies ``issuing`` or
``end_pending``; a slot that is full has lanes that fire.

Not proven: the window, read-set and cycle-count properties for every trace length. They depend
on the bitmap, the window list, the issue registers and the pipeline's window fields (no
invariants are written for those here), so they are checked to a stated depth (``checks.py``)
on frames of one to three windows: from reset through the priming frame and a second frame's
reads, events and end of frame. ``shift``, ``output_threshold`` and ``dense`` are not changed
between frames.
"""

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Cat, Const, Cover, Mux, Signal, Value
from amaranth.lib import data

from eventconv.hw.layer.sparse_max_pool import SparseMaxPool
from eventconv.hw.target import ECP5, GENERIC
from eventconv.sim.formal.harness import (
    Opened,
    assert_once_a_frame,
    assert_stream,
    assume_stream,
    free,
    proof_module,
    transfer,
)

__all__ = ["SparseMaxPoolProof", "Shared", "BUGS", "GEOMETRIES", "PARTS", "TARGETS"]

COUNT_WIDTH = 4
#: Frames outstanding at most (taken on ``touched``, end of frame not yet given on ``events``):
#: one whose end of frame waits in ``events``, one whose pipeline drains (``end_pending``) and
#: one taken since, waiting to start.
FRAMES_IN_FLIGHT = 3
#: A small accumulator: the control does not depend on its width.
ACCUMULATOR_WIDTH = 4
#: Tiny pools (``accumulator_width`` is ACCUMULATOR_WIDTH).
GEOMETRIES = {
    "2x2": dict(height=2, width=2, channels_out=1, lanes=1, pool=2),
    "2x4": dict(height=2, width=4, channels_out=1, lanes=1, pool=2),
    "2x4_groups2": dict(height=2, width=4, channels_out=2, lanes=1, pool=2),
    "2x4_lanes2": dict(height=2, width=4, channels_out=2, lanes=2, pool=2),
    "2x2_lanes2": dict(height=2, width=2, channels_out=2, lanes=2, pool=2),
    "2x6": dict(height=2, width=6, channels_out=1, lanes=1, pool=2),
    "2x2_pool1": dict(height=2, width=2, channels_out=1, lanes=1, pool=1),
    "2x4_pool1": dict(height=2, width=4, channels_out=1, lanes=1, pool=1),
}
#: The pool without early evaluation (no ``row_slack``): the generic target, and the ECP5's
#: (RAM read registers, the pool reading through the unit's data registers: ``read.take``).
TARGETS = {"generic": GENERIC, "ecp5": ECP5}
#: What each part states: "frames" (the frame and read handshakes, by induction), "windows"
#: (events and reads against the windows touched), "latency" (``events.ready`` held high:
#: the cycle counts).
PARTS = ("frames", "windows", "latency")


class Shared(SparseMaxPool):
    """The pool, keeping the namespace its stages share (``shared``) once elaborated: some of
    its registers are named ``$signal`` (declared in pairs), so not found by name."""

    def _shapes(self):
        self.shared = super()._shapes()
        return self.shared


def _lemma(test, message):
    return Assert(test, f"lemma: {message}")


class SparseMaxPoolProof:
    """Builds the proof of a :class:`SparseMaxPool` of ``geometry`` (a key of
    :data:`GEOMETRIES`) for ``target`` (a key of :data:`TARGETS`): the stream rule on
    ``events`` always, and the ``parts`` named (of :data:`PARTS`). ``lemmas=False`` leaves out
    the invariants (for a planted bug, in ``bmc``); ``patch`` plants a bug (see :data:`BUGS`).
    """

    def __init__(self, geometry="2x4", *, target="generic", parts=("frames",), lemmas=True,
                 patch=None):
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown parts {sorted(unknown)}")
        self.params = dict(GEOMETRIES[geometry], accumulator_width=ACCUMULATOR_WIDTH,
                           target=TARGETS[target])
        self.parts = tuple(parts)
        self.lemmas = lemmas
        self.patch = patch

    def __call__(self):
        block = Shared(**self.params)
        m, clk = proof_module()
        m.submodules.dut = dut = Opened(block, patch=self.patch)
        touched, events = block.touched, block.events
        window = touched.payload
        free(m, [touched.valid, touched.payload])
        if "latency" in self.parts:
            m.d.comb += events.ready.eq(1)
        else:
            free(m, events.ready)
        m.d.comb += [block.shift.eq(AnyConst(5)), block.output_threshold.eq(AnyConst(8)),
                     block.dense.eq(AnyConst(1))]
        assume_stream(m, touched, "touched")
        with m.If(touched.valid):
            m.d.comb += [Assume(window.y < block.height // 2),
                         Assume(window.x < block.width // 2)]
        assert_stream(m, events, "events")
        v = self._environment(m, block)
        if "frames" in self.parts:
            self._frames(m, block, v)
            if self.lemmas:
                self._lemmas(m, block, dut, v)
        if "windows" in self.parts:
            self._events_caused(m, block, v)
            self._reads_listed(m, block, v)
        if "latency" in self.parts:
            self._latency(m, block, v)
        return m, clk

    @staticmethod
    def _environment(m, block):
        """The frame counters, the hold, the accumulators' words and the windows of each frame
        in flight."""
        touched, events, read = block.touched, block.events, block.read
        v = {"eof_in": Signal(name="eof_in"), "eof_out": Signal(name="eof_out")}
        m.d.comb += [v["eof_in"].eq(transfer(touched) & touched.payload.end_of_frame),
                     v["eof_out"].eq(transfer(events) & events.payload.end_of_frame)]
        taken = Signal(COUNT_WIDTH, name="frames_taken")
        given = Signal(COUNT_WIDTH, name="frames_given")
        with m.If(v["eof_in"]):
            m.d.sync += taken.eq(taken + 1)
        with m.If(v["eof_out"]):
            m.d.sync += given.eq(given + 1)
        outstanding = Signal(COUNT_WIDTH, name="outstanding")
        m.d.comb += outstanding.eq(taken - given)
        # The accumulator unit's hold: from a touched end of frame until done.
        holding = Signal(name="holding")
        with m.If(read.done):
            m.d.sync += holding.eq(0)
        with m.Elif(v["eof_in"]):
            m.d.sync += holding.eq(1)
        v.update(taken=taken, given=given, outstanding=outstanding, holding=holding)
        # The accumulators: any word, chosen in the cycle after each read, held while en is low
        # during the hold; outside it anything, every cycle.
        width = len(Value.cast(read.data))
        word = Signal(width, name="ram_word")
        with m.If(read.en | ~holding):
            m.d.sync += word.eq(AnySeq(width))
        if block.target.registered_reader:
            # The accumulator unit's data register: loaded from the word with ``take``.
            register = Signal(width, name="data_register")
            with m.If(~holding):
                m.d.sync += register.eq(AnySeq(width))
            with m.Elif(read.take):
                m.d.sync += register.eq(word)
            m.d.comb += Value.cast(read.data).eq(register)
        else:
            m.d.comb += Value.cast(read.data).eq(word)
        # The windows given in each frame in flight: slot ``taken % 4`` collects (emptied as
        # the frame before ends); the first frame lists every window.
        windows = block.windows
        slots = [Signal(windows, name=f"windows_{i}", init=(1 << windows) - 1 if i == 0 else 0)
                 for i in range(4)]
        window = touched.payload
        index = window.y * (block.width // 2) + window.x
        for i, slot in enumerate(slots):
            with m.If(v["eof_in"] & (taken[:2] == (i - 1) % 4)):
                m.d.sync += slot.eq(0)
            with m.If(transfer(touched) & ~window.end_of_frame & (taken[:2] == i)):
                m.d.sync += slot.eq(slot | (1 << index))
        v["slots"] = slots
        return v

    @staticmethod
    def _slot(slots, counter):
        """The windows of frame ``counter`` (mod 4)."""
        result = slots[0]
        for i in range(1, 4):
            result = Mux(counter[:2] == i, slots[i], result)
        return result

    @staticmethod
    def _frames(m, block, v):
        """Ends of frame in and out, in order, none without one taken; the read handshake."""
        touched, events, read = block.touched, block.events, block.read
        out = events.payload
        outstanding, holding = v["outstanding"], v["holding"]
        m.d.comb += [
            Assert(~(events.valid & out.end_of_frame) | (outstanding != 0),
                   "no end of frame on events without one taken on touched"),
            Assert(~events.valid | (outstanding != 0),
                   "no event before its frame's end of frame is taken on touched"),
            Assert(outstanding <= FRAMES_IN_FLIGHT, "at most three frames in flight"),
            Assert(~read.en | holding, "read.en only between a touched end of frame and done"),
            Assert(~read.done | holding, "read.done once per touched end of frame"),
            Assert(~touched.ready | ~holding, "touched closed from its end of frame to done"),
            Assert(~(events.valid & out.end_of_frame) | ~holding | (outstanding >= 2),
                   "a frame's end of frame on events after its read.done"),
        ]
        with m.If(events.valid & out.end_of_frame):
            m.d.comb += Assert((out.channel == 0) & (out.y == 0) & (out.x == 0)
                               & (out.delta == 0), "end of frame: other fields 0")
        m.d.comb += Cover(outstanding == FRAMES_IN_FLIGHT, "three frames in flight")

    @staticmethod
    def _lemmas(m, block, dut, v):
        """Invariants over the pool's control that make ``_frames`` inductive."""
        s, events = block.shared, block.events
        f = {name: dut[name] for name in (
            "clearing", "collecting", "starting", "issuing", "finishing", "end_pending",
            "pipeline_empty", "fetched_last", "decided_valid", "decided_mask")}
        second_end = s.second_valid & s.second_end
        third_end = last = Const(0, 1)
        finishing_on = f["fetched_last"]
        if block.target.ram_read_register:
            third_end = dut["third_valid"] & dut["third_end"]
            last = dut["words_last"]
            finishing_on = finishing_on | last
            m.d.comb += [_lemma(~(second_end & third_end), "one end of frame collected"),
                         _lemma(~last | s.words_valid & f["finishing"] & ~f["fetched_last"],
                                "words_last")]
        events_end = events.valid & events.payload.end_of_frame
        states = sum(Value.cast(f[name]) for name in (
            "clearing", "collecting", "starting", "issuing", "finishing"))
        # s.words is the landed stage with ``ram_read_register`` (else s.words_valid's).
        stages = [s.fetched_valid, s.words_valid, s.words.valid, s.pairs_valid,
                  s.maximum.valid, s.scaled_valid, s.difference.valid, f["decided_valid"]]
        busy = (Cat(*stages).any() | (Value.cast(s.result.mask) != 0) | s.waiting.full
                | (events.valid & ~events.payload.end_of_frame))
        m.d.comb += [
            _lemma(states == 1, "one state"),
            _lemma(v["outstanding"] == second_end + third_end + f["starting"] + f["issuing"]
                   + f["end_pending"] + events_end,
                   "frames outstanding: collected, starting, issuing, draining, in events"),
            _lemma(v["holding"] == (second_end | third_end | f["starting"] | f["issuing"]
                                    | f["finishing"]), "the hold: from collected to finished"),
            _lemma(~(second_end | third_end) | f["collecting"], "end of frame collected"),
            _lemma(~f["issuing"] | ~f["end_pending"], "issuing: the last frame's end given"),
            _lemma(~f["finishing"] | f["end_pending"] & finishing_on, "finishing"),
            _lemma(~f["fetched_last"] | s.fetched_valid & f["finishing"], "fetched_last"),
            _lemma(~f["pipeline_empty"] | ~Cat(*stages).any(), "pipeline_empty"),
            _lemma(~busy | f["issuing"] | f["end_pending"], "work only for a frame"),
            _lemma(~f["decided_valid"] | (f["decided_mask"] != 0), "decided lanes fire"),
            _lemma(~s.waiting.full | (Value.cast(s.waiting.mask) != 0)
                   & (Value.cast(s.result.mask) != 0), "waiting full behind result"),
        ]

    def _events_caused(self, m, block, v):
        """Each event for a window touched in its frame, each (channel, y, x) once a frame."""
        events = block.events
        out = events.payload
        pool = block.pool
        rows, columns = block.height // pool, block.width // pool
        current = self._slot(v["slots"], v["given"])
        wy, wx = (out.y, out.x) if pool == 2 else (out.y >> 1, out.x >> 1)
        with m.If(events.valid & ~out.end_of_frame):
            m.d.comb += [
                Assert((out.channel < block.channels_out) & (out.y < rows) & (out.x < columns),
                       "event channel and position in range"),
                Assert(current.bit_select(wy * (block.width // 2) + wx, 1),
                       "an event only for a window touched in its frame (the first: all)"),
            ]
        emitted = assert_once_a_frame(m, events, v["eof_out"],
                                      (block.channels_out, rows, columns))
        data_out = transfer(events) & ~out.end_of_frame
        m.d.comb += [Cover(data_out & (v["given"] == 1), "an event of the second frame"),
                     Cover(v["eof_out"] & (v["given"] == 1) & (emitted != 0),
                           "the second frame's end of frame after its events")]

    def _reads_listed(self, m, block, v):
        """The reads of a frame: each of its windows touched x groups, once (pool 1: four
        times in a row), none else."""
        read = block.read
        depth = block.groups * block.windows
        reads = Signal(depth, name="reads")
        last_address = Signal.like(read.addr, name="last_address")
        run = Signal(2, name="run")         # pool 1: reads of last_address so far, minus 1
        again = reads.bit_select(read.addr, 1)
        with m.If(read.done):
            m.d.sync += reads.eq(0)
        with m.Elif(read.en):
            m.d.sync += [reads.eq(reads | (1 << read.addr)), last_address.eq(read.addr),
                         run.eq(Mux(again, run + 1, 0))]
        with m.If(read.en):
            m.d.comb += Assert(read.addr < depth, "read address in range")
            if block.pool == 2:
                m.d.comb += Assert(~again, "each (window, group) read once per frame")
            else:
                m.d.comb += [
                    Assert(~again | (read.addr == last_address) & (run != 3),
                           "pool 1: each (window, group) read four times in a row, once"),
                    Assert(again | (reads == 0) | (run == 3),
                           "pool 1: four reads of a (window, group) before the next"),
                ]
        held = self._slot(v["slots"], v["taken"] - 1)
        now = reads | Mux(read.en, 1 << read.addr, 0)
        with m.If(read.done):
            m.d.comb += Assert(now == held.replicate(block.groups),
                               "the reads of a frame: its windows touched x groups")
            if block.pool == 1:
                m.d.comb += Assert((reads == 0) | (run + read.en == 3),
                                   "pool 1: four reads of the last (window, group)")
        m.d.comb += Cover(read.done & (v["taken"] == 2) & (reads != 0),
                          "the second frame's reads done")

    @staticmethod
    def _latency(m, block, v):
        """``events.ready`` high: a frame's end of frame on events within the docstring's
        cycles of its touched end of frame (of the previous frame's end of frame given, for
        a frame taken while that one was outstanding)."""
        events, read = block.events, block.read
        # ECP5 (``ram_read_register``): the first read a cycle later, and the landed stage.
        extra = int(block.target.ram_read_register)
        limit = 2 * (block.stored_depth * (block.lanes + 1) + 16)
        timing = Signal(name="timing")      # the oldest frame outstanding is timed
        queued = Signal(name="queued")      # ... from the previous frame's end of frame
        elapsed = Signal(range(limit + 1), name="elapsed")
        reads = Signal(range(limit + 1), name="frame_reads")
        fired = Signal(range(limit + 1), name="frame_events")
        restart = v["eof_out"] & (v["outstanding"] >= 2)
        with m.If((v["eof_in"] & (v["outstanding"] == 0)) | restart):
            m.d.sync += [timing.eq(1), queued.eq(restart), elapsed.eq(1), reads.eq(0),
                         fired.eq(0)]
        with m.Else():
            with m.If(v["eof_out"]):
                m.d.sync += timing.eq(0)
            with m.If(elapsed != limit):
                m.d.sync += elapsed.eq(elapsed + 1)
            with m.If(read.en):
                m.d.sync += reads.eq(reads + 1)
            with m.If(transfer(events) & ~events.payload.end_of_frame):
                m.d.sync += fired.eq(fired + 1)
        m.d.comb += Assert(~timing | (elapsed < limit), f"an end of frame within {limit}")
        with m.If(v["eof_out"] & timing):
            most = reads + fired + 12 + 2 * extra
            with m.If(queued):
                # Its reads start as the previous end of frame is loaded on events: as if its
                # own end of frame had been taken two cycles before that one was given.
                m.d.comb += Assert(elapsed <= most - 2, "queued frame: end of frame within "
                                   "G + E + 10 cycles (ECP5 12) of the previous one's")
            with m.Elif(reads == 0):
                m.d.comb += Assert(elapsed == 4 + extra,
                                   "a frame without reads: end of frame in 4 cycles (ECP5 5)")
            with m.Else():
                m.d.comb += [
                    Assert(elapsed <= most, "end of frame within G + E + 12 cycles (ECP5 14)"),
                    Assert((elapsed >= reads + 11 + 2 * extra) &
                           (elapsed >= fired + 12 + 2 * extra),
                           "end of frame no sooner than max(G + 11, E + 12) (ECP5 + 2)"),
                ]
        if block.lanes == 1:
            # One lane fires at most per read: the result slots never stop the reads.
            with m.If(read.done & timing & ~queued & (v["outstanding"] == 1)):
                m.d.comb += Assert(elapsed == Mux(reads + read.en == 0, 2 + extra,
                                                  reads + read.en + 3 + 2 * extra),
                                   "read.done G + 3 cycles after the end of frame (ECP5 G + 5;"
                                   " without reads 2, ECP5 3)")
        m.d.comb += [
            Cover(v["eof_out"] & timing & ~queued & (reads != 0) & (v["given"] == 1),
                  "a frame with reads timed from its end of frame"),
            Cover(v["eof_out"] & timing & queued & (reads != 0),
                  "a frame with reads timed from the previous frame's end of frame"),
        ]


def _out_free(dut):
    events = dut.block.events
    return ~events.valid | events.ready


def _valid_drops(dut):
    # ``events.valid`` is high only in the cycle after a load: a beat not taken is dropped.
    result = dut.block.shared.result
    load = ((result.mask != 0) & _out_free(dut)) | dut["end_of_frame_load"]
    return {"sync": [dut.block.events.valid.eq(load)]}


def _eof_early(dut):
    # The end of frame is loaded once the result slots are empty, the pipeline not waited for.
    result = dut.block.shared.result
    return {"comb": [dut["end_of_frame_load"].eq(dut["end_pending"] & (result.mask == 0)
                                                 & _out_free(dut))]}


def _done_early(dut):
    # read.done also pulsed as the reads start, as for a frame without listed windows.
    start = dut["starting"] & ~dut["end_pending"]
    return {"comb": [dut.block.read.done.eq(dut["done"] | start)]}


def _event_twice(dut):
    # Every other event leaves its lane in the result slot: with two lanes firing, the lower
    # one's event is given twice.
    result = dut.block.shared.result
    load = (result.mask != 0) & _out_free(dut)
    again = Signal(name="bug_again")
    return {"sync": [again.eq(again ^ load)],
            "comb": [dut["clear_lane"].eq(Mux(again, 1 << dut["lane"], 0))]}


def _no_forwarding(dut):
    # A window given on two cycles in a row is not recognised the second time (its bitmap bit
    # is still being written): listed twice.
    return {"sync": [dut["repeated"].eq(0)]}


def _forwarding_one_back(dut):
    # ECP5 (third collection stage): the forwarding covers the beat before only, not the one
    # two before, whose bitmap bit is also still being written: listed twice.
    s, window = dut.block.shared, dut.block.touched.payload
    before = data.View(s.window_shape, dut["second_window"])
    repeat = (s.second_valid & ~s.second_end & (window.y == before.y)
              & (window.x == before.x))
    return {"sync": [dut["repeated"].eq(repeat)]}


def _stale_bitmap(dut):
    # A window's bitmap bit is written 1 as its first read is issued, not cleared: touched in
    # a later frame, it is not listed again.
    return {"comb": [dut["bitmap_write__data"].eq(1)]}


def _event_window_early(dut):
    # An event carries the window of the read behind it (the decided stage's), not its own.
    events, shared = dut.block.events, dut.block.shared
    out, load = events.payload, (shared.result.mask != 0) & _out_free(dut)
    return {"sync": [out.y.eq(Mux(load, shared.decided.window.y, out.y)),
                     out.x.eq(Mux(load, shared.decided.window.x, out.x))]}


def _slow_pipeline(dut):
    # The pipeline moves every other cycle: results right, the end of frame late.
    toggle = Signal(name="bug_toggle")
    return {"sync": [toggle.eq(~toggle)],
            "comb": [dut["advance"].eq(~dut["waiting_full"] & toggle)]}


#: Planted bugs, each a patch of the pool's registers or signals: (what, patch).
BUGS = {
    "valid_drops": ("events.valid falls in the cycle after a load whether taken or not",
                    _valid_drops),
    "eof_early": ("the end of frame is loaded without waiting for the pipeline to empty "
                  "(events after it)", _eof_early),
    "done_early": ("read.done also pulsed as the reads start (reads after done)", _done_early),
    "event_twice": ("with two lanes firing the lower one's event is given twice",
                    _event_twice),
    "no_forwarding": ("a window repeated on the next cycle is listed (and read) twice",
                      _no_forwarding),
    "forwarding_one_back": ("ECP5: a window given again two cycles later is listed (and "
                            "read) twice", _forwarding_one_back),
    "stale_bitmap": ("a window's bitmap bit is not cleared as it is read (not listed when "
                     "touched in a later frame)", _stale_bitmap),
    "event_window_early": ("an event carries the window of the read behind it",
                           _event_window_early),
    "slow_pipeline": ("the pipeline moves every other cycle (the end of frame late)",
                      _slow_pipeline),
}
