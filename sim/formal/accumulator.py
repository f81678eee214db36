"""AccumulatorUnit: the ``touched`` stream keeps the protocol (proven by induction); and, bounded
(``bmc``) from the initial state: every update beat taken is applied once (the words read back
while a frame is held are the bias plus the sum of ``delta * weight`` of every update taken, from
reset on: none lost, none doubled); each frame's end-of-frame beat passes exactly once, after a
window of every update of the frame and after none of the next; no window without an update of
its frame; ``updates`` is closed from a frame's end until the reader's ``done``; none lost (the
end of frame is given within a bound of cycles of ``ready``).

Not proven: the sums and the frame properties for every trace length. The read-modify-write
pipeline, its forwarding and the memories have no invariants (lemmas) written here, so those
properties are checked to a stated depth only (see ``checks.py``): depth 14 on a 2 x 2 frame
reaches one frame of back-to-back updates read back, not a second frame.

How: the proof keeps its own copy of every accumulator (a register per lane, bank and address,
starting at the bias), adding ``delta * weight`` (the weight from the configuration) for each
update taken, and checks the unit's ``read.data`` against it the cycle after every read made
while the frame is held (between the end of frame given on ``touched`` and ``read.done``). The
reader is the solver: any address, ``en`` and ``done`` (once per frame end given, at the
earliest in the cycle of that transfer). A bit per window records the windows of the frame's
updates taken and another those given on ``touched``; at the end of frame both must agree.

The same proof covers :class:`~eventconv.hw.layer.accumulator_spram.SpramAccumulatorUnit`
(``unit``): its read port is paced, so the reader waits out ``wait`` and the words are checked
in the first cycle after a read without it; bounded to depth 20 there (the clear, two beats two
cycles apart, the end of frame, five stages and a five-cycle read on a 2 x 2 frame).
"""

from amaranth.hdl import Array, Assert, Assume, Const, Cover, Mux, Signal, signed

from eventconv.hw.layer.accumulator import AccumulatorUnit
from eventconv.hw.layer.accumulator_lane import BANKS
from eventconv.sim.formal.harness import (
    Opened,
    assert_stream,
    assume_stream,
    free,
    proof_module,
    quiet_cycles,
    transfer,
)

__all__ = ["AccumulatorProof", "BUGS", "GEOMETRIES", "SPRAM_BUGS"]

COUNT_WIDTH = 4
#: Tiny layers: the parameters of the unit (weights and bias chosen nonzero and distinct).
GEOMETRIES = {
    "2x2": dict(height=2, width=2, channels_in=1, channels_out=1, kernel_size=1, lanes=1,
                weights=[[[[3]]]], bias=[5]),
    "2x2_lanes2": dict(height=2, width=2, channels_in=2, channels_out=2, kernel_size=1,
                       lanes=2, weights=[[[[3]], [[1]]], [[[-2]], [[5]]]], bias=[5, -7]),
    "4x4_k3": dict(height=4, width=4, channels_in=1, channels_out=2, kernel_size=3, lanes=1,
                   weights=[[[[1, -2, 3], [4, -5, 6], [7, -8, 9]]],
                            [[[-1, 2, -3], [-4, 5, -6], [-7, 8, -9]]]], bias=[5, -7]),
}
#: What each part of the proof states (``parts``).
PARTS = ("frames", "windows", "sums")


class AccumulatorProof:
    """Builds the proof of an :class:`AccumulatorUnit` of ``geometry`` (a key of
    :data:`GEOMETRIES`): the stream rule always, and the ``parts`` named (of :data:`PARTS`).
    ``patch`` plants a bug (see :data:`BUGS`)."""

    def __init__(self, geometry="2x2", *, parts=PARTS, patch=None, unit=AccumulatorUnit):
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown parts {sorted(unknown)}")
        self.params = GEOMETRIES[geometry]
        self.parts = tuple(parts)
        self.patch = patch
        self.unit = unit

    def __call__(self):
        p = self.params
        block = self.unit(**p)
        m, clk = proof_module()
        m.submodules.dut = Opened(block, patch=self.patch)
        updates, touched, read = block.updates, block.touched, block.read
        update = updates.payload
        free(m, [updates.valid, updates.payload, touched.ready, read.addr, read.en, read.done])
        assume_stream(m, updates, "updates")
        assert_stream(m, touched, "touched")
        m.d.comb += [Assume(update.y < p["height"]), Assume(update.x < p["width"]),
                     Assume(update.group < block.groups),
                     Assume(update.channel < p["channels_in"]),
                     Assume(update.tap < p["kernel_size"] ** 2),
                     Assume(~read.en | (read.addr < _windows(block)))]
        if hasattr(read, "wait"):
            # A paced read: the reader issues nothing and takes nothing while ``wait`` is high,
            # and gives ``done`` once it has the data, not with a read.
            m.d.comb += [Assume(~read.en | ~read.wait), Assume(~read.done | ~read.wait),
                         Assume(~read.done | ~read.en)]
        held = self._frames(m, block, "frames" in self.parts)
        if "windows" in self.parts:
            self._windows(m, block)
        if "sums" in self.parts:
            self._sums(m, block, held)
        return m, clk

    @staticmethod
    def _frames(m, block, check):
        """Ends of frame: taken, given on ``touched``, released by ``done``; the reader's
        assumption; with ``check``, the handshake's properties. Returns ``held``: between an
        end of frame given and its ``done``."""
        updates, touched, read = block.updates, block.touched, block.read
        counters = {name: Signal(COUNT_WIDTH, name=f"frames_{name}")
                    for name in ("taken", "given", "released")}
        eof_taken = transfer(updates) & updates.payload.end_of_frame
        eof_given = transfer(touched) & touched.payload.end_of_frame
        for name, when in (("taken", eof_taken), ("given", eof_given), ("released", read.done)):
            with m.If(when):
                m.d.sync += counters[name].eq(counters[name] + 1)
        taken, given, released = counters["taken"], counters["given"], counters["released"]
        # The reader: ``done`` once per end of frame given, at the earliest with its transfer.
        held = Signal(name="held")
        m.d.comb += held.eq(given != released)
        m.d.comb += Assume(~read.done | held | eof_given)
        if not check:
            return held
        # Drain: cycles in a row with touched.ready high and no update offered.
        drain = block.LATENCY + 4
        quiet = quiet_cycles(m, touched.ready & ~updates.valid, drain + 1)
        m.d.comb += [
            Assert(~(touched.valid & touched.payload.end_of_frame) | (taken != given),
                   "no end of frame on touched without one taken"),
            Assert((taken - given) <= 1, "one frame in flight"),
            Assert(~updates.ready | (taken == released),
                   "updates closed from a frame's end until done"),
            Assert((quiet < drain) | (taken == given),
                   f"none lost: the end of frame given within {drain} cycles of ready"),
        ]
        return held

    @staticmethod
    def _windows(m, block):
        """A window of every update taken in the frame given before its end, none else."""
        updates, touched = block.updates, block.touched
        update, window = updates.payload, touched.payload
        rows, columns = block._config.height // 2, block._config.width // 2
        needed = Signal(rows * columns, name="windows_needed")
        given = Signal(rows * columns, name="windows_given")
        index = (update.y >> 1) * columns + (update.x >> 1)
        out_index = window.y * columns + window.x
        eof_given = transfer(touched) & window.end_of_frame
        with m.If(transfer(updates) & ~update.end_of_frame):
            m.d.sync += needed.eq(needed | (1 << index))
        with m.If(eof_given):
            m.d.sync += [needed.eq(0), given.eq(0)]
        with m.Elif(transfer(touched)):
            m.d.sync += given.eq(given | (1 << out_index))
        with m.If(touched.valid & ~window.end_of_frame):
            m.d.comb += [Assert((window.y < rows) & (window.x < columns), "window in the frame"),
                         Assert(needed.bit_select(out_index, 1),
                                "no window without an update of the frame")]
        with m.If(eof_given):
            m.d.comb += [Assert((needed & ~given) == 0,
                                "a window of every update given before the end of frame"),
                         Assert((window.y == 0) & (window.x == 0),
                                "end of frame: other fields 0")]

    @staticmethod
    def _sums(m, block, held):
        """The proof's own accumulators; read back while held, they must match."""
        c = block._config
        updates, read = block.updates, block.read
        update = updates.payload
        taps = c.kernel_size ** 2
        shape = signed(block.accumulator_width)
        positions = c.height * c.width // 4
        windows = _windows(block)
        bank = update.y[0] * 2 + update.x[0]
        address = (update.group * (c.height // 2) + (update.y >> 1)) * (c.width // 2) \
            + (update.x >> 1)
        weight_index = (update.group * c.channels_in + update.channel) * taps + update.tap
        sums = [[[Signal(shape, init=int(c.bias[(a // positions) * c.lanes + j]),
                         name=f"sum_{j}_{q}_{a}")
                  for a in range(windows)]
                 for q in range(BANKS)] for j in range(c.lanes)]
        applied = transfer(updates) & ~update.end_of_frame
        for j in range(c.lanes):
            rows = c.weights[j::c.lanes].reshape(-1)
            weight = Array(Const(int(v), signed(8)) for v in rows)[weight_index]
            for q in range(BANKS):
                for a in range(windows):
                    total = sums[j][q][a]
                    with m.If(applied & (bank == q) & (address == a)):
                        m.d.sync += total.eq(total + update.delta * weight)
        # The words of a read are in ``data`` the cycle after ``en`` (paced: the first cycle
        # after it without ``wait``).
        wait = getattr(read, "wait", Const(0))
        pending = Signal(name="read_pending")
        asked_address = Signal.like(read.addr, name="asked_address")
        m.d.sync += pending.eq((held & read.en) | (pending & wait))
        with m.If(held & read.en):
            m.d.sync += asked_address.eq(read.addr)
        asked = Signal(name="asked")
        m.d.comb += asked.eq(pending & ~wait)
        with m.If(asked):
            for j in range(c.lanes):
                for q in range(BANKS):
                    m.d.comb += Assert(
                        read.data[q][j] == Array(sums[j][q])[asked_address],
                        "the words read back: bias + every update taken, delta * weight")
        m.d.comb += Cover(asked & (read.data[0][0] != sums[0][0][0].init)
                          & (read.data[1][0] != sums[0][1][0].init),
                          "two accumulators read back changed")


def _windows(block):
    """Window addresses of the unit's read port: groups x H/2 x W/2."""
    c = block._config
    return block.groups * (c.height // 2) * (c.width // 2)


def _no_forwarding(dut):
    # Each lane's mult stage takes its bank's word, never a forwarded sum.
    advance, bank = dut["output/advance"], dut["mult_bank"]
    patch = {}
    for j in range(dut.block._config.lanes):
        old = dut[f"lane_{j}/write_old"]
        stored = Array(dut[f"lane_{j}/raw_{q}"] for q in range(BANKS))[bank]
        patch[f"lane_{j}/sync"] = [old.eq(Mux(advance, stored, old))]
    return patch


def _taken_while_closed(dut):
    # The row stage loads an update offered while ``updates`` is not ready (the producer
    # offers it again, so it is applied twice); an end of frame only when taken.
    updates, row_valid = dut.block.updates, dut["row_valid"]
    taken = updates.valid & (updates.ready | ~updates.payload.end_of_frame)
    return {"sync": [row_valid.eq(Mux(dut["output/advance"], taken, row_valid))]}


def _touched_overwritten(dut):
    # TouchedOutput's output register loads a window pushed while the consumer stalls (instead
    # of the skid register only): the enable ``~valid | ready`` left out there.
    payload, skid, skid_valid = (dut[f"output/{name}"] for name in (
        "touched__payload", "skid", "skid_valid"))
    output, = (fragment.origins[0] for fragment, name, _ in dut.fragment.subfragments
               if name == "output")                         # the TouchedOutput itself
    touched = dut.block.touched
    push = output.advance & output.write_valid & ~dut["output/write_same"]
    unload = skid_valid & (~touched.valid | touched.ready)
    return {"output/sync": [payload.eq(Mux(unload, skid,
                                           Mux(push, output.write_window, payload)))]}


def _spram_no_forwarding(dut):
    # The mult stage always takes the word read, never the sum of the beat just ahead that is
    # not written back yet.
    return {"sync": [dut["hit"].eq(0)]}


def _spram_parity_stuck(dut):
    # The even/odd alternation stuck at even: every cycle takes a beat and no commit is
    # scheduled in its own cycle (reads and writes of the single port collide).
    return {"sync": [dut["odd"].eq(0)]}


def _spram_not_paced(dut):
    # ``wait`` never raised: the pool takes a window's words before they are all read.
    return {"sync": [dut["running"].eq(0)]}


#: Planted bugs of SpramAccumulatorUnit, as :data:`BUGS`.
SPRAM_BUGS = {
    "no_forwarding": ("no forwarding: a beat right behind one to the same accumulator reads "
                      "the word before its write (an update lost)", _spram_no_forwarding),
    "parity_stuck": ("the single port's read and write cycles no longer alternate (updates "
                     "lost)", _spram_parity_stuck),
    "not_paced": ("the pool's read is not paced: its words are taken before they are read",
                  _spram_not_paced),
}


#: Planted bugs, each a patch of one AccumulatorUnit register: (what, patch).
BUGS = {
    "no_forwarding": ("no forwarding: an update right behind one to the same accumulator "
                      "reads the stale word (an update lost)", _no_forwarding),
    "taken_while_closed": ("the pipeline takes a beat offered while updates is not ready (an "
                           "update applied twice)", _taken_while_closed),
    "touched_overwritten": ("a window pushed while touched stalls overwrites the one "
                            "waiting there (a beat lost)", _touched_overwritten),
}
