"""Sparse max pool: requantize, 2 x 2 max pool (or none) and emit only the values that changed
by more than the output threshold.

SPEC steps 3-5, the hardware of :func:`eventconv.core.model.pool_stage`, with work proportional to
the pool windows a frame touched instead of to the frame size.
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from eventconv.core import ranges
from eventconv.core.config import POOLS, checked_config
from eventconv.core.event_format import bits_for_count
from eventconv.hw.layouts import (
    DELTA_SHAPE,
    AccumulatorReadSignature,
    EventStream,
    WindowStream,
    times,
)
from eventconv.hw.primitives.block_ram import NO_RW_CHECK, UncheckedReadPort, register_stage
from eventconv.hw.target import GENERIC, checked_target

__all__ = ["SparseMaxPool"]

MAX_ACCUMULATOR_WIDTH = 64
POOLED_SHAPE = unsigned(8)


def _frame_side(name, value, pool):
    """A frame side: even also without pooling (the accumulators are read by 2 x 2 windows)."""
    if pool == 2:
        return ranges.frame_side(name, value)
    value = ranges.integer(name, value, 2, ranges.MAX_FRAME_SIDE)
    if value % 2:
        raise ranges.ConfigError(f"{name} must be even (the accumulators are read by 2 x 2 "
                                 f"windows, also with pool 1) and in 2..{ranges.MAX_FRAME_SIDE},"
                                 f" not {value}")
    return value


def _many(bits):
    """More than one of ``bits`` set: a tree of LUTs (any, many per half), no carry chain."""
    def walk(lo, hi):
        if hi - lo == 1:
            return bits[lo], Const(0, 1)
        mid = (lo + hi) // 2
        (a_any, a_many), (b_any, b_many) = walk(lo, mid), walk(mid, hi)
        return a_any | b_any, a_many | b_many | (a_any & b_any)
    return walk(0, len(bits))[1]


def _larger(a, b):
    return Mux(a > b, a, b)


def _requantize(value, shift, over):
    """SPEC step 3 on a signed accumulator: ``min(255, max(0, value) >> shift)``. ``over``
    has the bits at and above ``8 + shift`` set (registered from ``shift``): ``value >>
    shift`` is above 255 exactly where the value has one of them, an AND and an OR tree
    rather than a compare after the shifter."""
    magnitude = value.as_unsigned()
    return Mux(value[-1], 0, Mux((magnitude & over).any(), 255, (magnitude >> shift)[:8]))


def _over_mask(m, shift, width):
    """A register with the bits at and above ``8 + shift`` of a ``width``-bit value set."""
    over = Signal(width, name="over_mask")
    m.d.sync += over.eq(Cat(shift <= bit - 8 if bit >= 8 else Const(0, 1)
                            for bit in range(width)))
    return over


class SparseMaxPool(wiring.Component):
    """Requantize, pool (2 x 2 max, or none) and sparse output of the accumulators (SPEC
    steps 3-5).

    P is the requantized accumulators, max-pooled by 2 x 2 windows with ``pool`` 2, as they are
    with ``pool`` 1; R, the stored map, is the P the pool last emitted. The accumulators are
    read by 2 x 2 windows with either ``pool``: with ``pool`` 1 a window holds four positions
    of the map.

    During a frame the pool records each window given on ``touched`` once: a bitmap (a bit per
    window, addressed by ``py`` and ``px`` side by side: ``(H/2) * 2**ceil(log2(W/2))`` bits)
    says which windows are already listed, and a list memory holds them in order of first
    arrival (with each window's read address when W/2 is not a power of two). One ``touched``
    beat is taken per clock; a window repeated on the next cycle, whose bitmap bit is still
    being written, is recognised by forwarding.

    After the ``end_of_frame`` beat on ``touched`` the accumulators are read through ``read``,
    one read per listed window and channel group g (lanes j, output channels
    ``o = g * lanes + j``), with ``pool`` 1 one per listed window, group and position
    ``q = 2 * dy + dx`` of the window (the four reads of a (window, group) follow each other,
    q = 0 to 3, at the same read address): the accumulator banks give the four accumulators of
    every lane of the window at once. A pipeline, one read per clock, max-pools them as raw
    signed values (requantization is monotonic, so the max commutes with it; with ``pool`` 1
    it selects position q instead), then requantizes, ``a = min(255, max(0, acc) >> shift)``,
    and subtracts the stored value R (one memory per lane, uint8, address
    ``(g * H/2 + py) * W/2 + px``, the same as the read's; with ``pool`` 1 that address times 4
    plus q). A lane fires where ``|P - R| > output_threshold``, in dense mode always; only a
    lane that fires writes P back to R. The window's bitmap bit is cleared. A read with lanes
    that fire goes to one of two result slots; those lanes give the output events
    ``(o, y, x, P - R)``, one per clock, ``(y, x) = (py, px)`` with ``pool`` 2 and
    ``(2 py + dy, 2 px + dx)`` with ``pool`` 1. The reads stop while both slots are full.
    After the last read's data is taken, ``read.done`` is pulsed once and one ``end_of_frame``
    beat (other fields 0) follows the frame's last event. Events come in list order, then
    group, then (``pool`` 1) position, then lane: deterministic for a given ``touched``
    sequence.

    Pipeline::

        issue       read (window, group[, position]) from the accumulators
        fetch       accumulators out, registered as they are
        (landed)    with ``target.registered_reader``: registered again beside the pool
        pair        each lane's max of the two pairs (pool 1: the position's column) registered
        maximum     each lane's max of four (pool 1: the position) registered; R read
        requantize  the requantized values P and R registered
        difference  P - R and |P - R| registered beside P
        compare     |P - R| against the threshold: the lanes that fire registered, with P
        result      P written back where a lane fires as the read enters a result slot; the
                    slot's lanes that fire to ``events``, one per clock (lowest lane first)

    Throughput: ``touched`` takes one beat per clock while collecting. The end-of-frame work
    takes one cycle per read (listed (window, group), with ``pool`` 1 four per listed
    (window, group)) and one per output event, overlapped. With ``events`` always ready, from
    the ``end_of_frame`` transfer on ``touched`` to the ``end_of_frame`` transfer on
    ``events``, a frame of G reads giving E events takes between ``max(G + 11 + n_last,
    E + 12)`` and ``G + E + 12`` cycles, where n_last is the lanes that fire of the last read;
    exactly ``G + 11 + n_last`` when no read fires more than one lane, and ``E + 12`` when every
    one fires the same number n >= 1 of lanes. A frame without listed windows takes 4 cycles,
    whatever the frame size. The first read is issued 3 cycles after the ``end_of_frame``
    transfer; ``read.done`` is pulsed in the cycle the last read's data is taken (G + 3 cycles
    after that transfer when the result slots do not stop the reads, 2 for a frame without
    listed windows), and ``touched`` is ready again from the next cycle, while the frame's last
    events still go out; from a frame's ``end_of_frame`` beat on ``touched`` until then
    ``touched`` is not ready. A frame's first read waits until the previous frame's
    ``end_of_frame`` beat is loaded on ``events``.

    With ``target.ram_read_register`` every block RAM's read data goes into flip-flops and
    nothing else, without read-during-write logic (an ECP5 DP16KD alone takes 5.8 ns from
    clock to output in nextpnr's model): the bitmap bit into a register, and a third
    collection stage decides (forwarding then covers the windows of the two beats before);
    the list entry into the issue registers with an enable only (the clear counts with its
    own register); the stored values, read a stage earlier, into two registers one after the
    other; and, without a read port of the pool's own (``target.registered_reader``),
    ``read`` is registered (its ``data`` the accumulator unit's register, loaded with
    ``read.take``), then registered again beside the pool (the *landed* stage: the RAM's
    data crosses the chip in a cycle of its own, not into the compare chain). The first
    read is then issued in cycle 4 and a frame without listed windows takes 5 cycles; every
    other figure above from the ``end_of_frame`` transfer on ``touched`` to the one on
    ``events`` is two cycles more (``G + 13 + n_last``, ``E + 14``, ``G + E + 14``), and
    ``read.done`` two more when there are reads (G + 5; 3 for a frame without listed
    windows), once the last read's data has left the accumulator unit's register.

    Early evaluation (``row_slack`` given, with ``target.pool_read_port``: the accumulator
    unit's banks have a read port of the pool's own). Rows are counted from the top (row 0).
    No window touched after a window of row r lies in a row before ``r - row_slack`` (the
    kernel's reach and the order of the layer's input events:
    :func:`~eventconv.hw.layer.layer.pool_row_slack`), so once a window of row r has been
    collected, the rows before ``r - row_slack`` are final: no later beat touches them, and
    their updates are in the banks (a window shows on ``touched`` only once its updates are
    written). The list is then a queue read while the
    collection goes on: its head is loaded into the issue registers as soon as it is listed
    and read, group by group, once its row is final (``final_rows``, the highest collected
    row minus ``row_slack``), or after the frame's ``end_of_frame`` for the rest. A first
    read waits a cycle where a new window sets its bitmap bit (the bitmap has one write
    port). Events come in the same order as without it. ``read.done`` is pulsed as the last
    read is issued (its words are latched in the pool's own port), or, if every listed
    window was read during the frame, in the cycle after the ``end_of_frame`` beat is
    decided (2 cycles after its transfer, 3 with ``target.ram_read_register``). The
    end-of-frame work is then that of the reads left at the frame's end, through the same
    pipeline. A frame's reads, and its ``done``, still wait for the previous frame's
    ``end_of_frame`` beat to be loaded on ``events`` (one ``end_of_frame`` per frame).

    Reset (priming): after reset a clear sequence writes 0 into every stored value and lists
    every window, in raster order (``py``, then ``px``), as if each had been touched once; its
    bitmap bit is set. That takes one cycle per stored value of a lane, ``(Cout / lanes) *
    (H/2) * (W/2)`` cycles with ``pool`` 2 and ``(Cout / lanes) * H * W`` with ``pool`` 1
    (:attr:`clear_cycles`), with ``touched`` not ready meanwhile. So the first
    ``end_of_frame`` on ``touched`` after reset (windows touched before it are already listed)
    reads every window, G = ``clear_cycles``, and emits ``P - 0`` wherever that exceeds
    ``output_threshold`` (or everywhere in dense mode). Why: in a network, layer i + 1's
    accumulators must start at ``correlate(R_i, w) + bias`` with R_i layer i's reset map
    (SPEC, "A network"), while the accumulator units clear to the bias alone. The engine
    sends one empty frame (only an ``end_of_frame`` beat) through every layer after reset,
    with ``output_threshold`` held at 0: each pool then emits its reset map as events into the
    next layer, which accumulates them, and leaves R = its reset map; the last layer's output
    of that frame is swallowed. Nothing here depends on the bias or on ``shift`` at reset.

    Parameters
    ----------
    height, width : int
        Input frame size H, W: even (also with ``pool`` 1: the accumulators are read by
        windows), 2..4096.
    channels_out : int
        Cout, 1..1024.
    accumulator_width : int
        Signed width of an accumulator, 1..64 (as
        :attr:`eventconv.core.config.Config.accumulator_width`).
    lanes : int
        Output channels per accumulator word (and per group), dividing ``channels_out``.
    pool : int
        2: 2 x 2 max pool, stride 2; 1: no pooling (1 or 2, built in).
    target : :class:`~eventconv.hw.target.Target`
        ``ram_read_register``: every block RAM read into a register (see above).
        ``spram_accumulators``: ``read`` is paced: the whole pipeline waits while
        ``read.wait`` is high, so the end-of-frame work takes R cycles per read instead of
        one (R = 5 with :class:`~eventconv.hw.layer.accumulator_spram.SpramAccumulatorUnit`);
        and the unit's read data, registered there and held until the next read, is used
        without a register stage of the pool's own (a cycle less per frame: a frame of G
        reads takes from ``R G + 10 + n_last``).
        ``pool_read_port``: with ``row_slack``, early evaluation (see above).
    row_slack : int or None
        How many window rows a touched window may lie below one touched after it, 0..4096;
        None (the default): the input's order is not known, every window is read after the
        frame's end.

    Attributes
    ----------
    groups : int
        ``channels_out / lanes``.
    windows : int
        ``(H/2) * (W/2)``: list entries.
    address_width : int
        Width of ``read.addr``, as the accumulator unit's.
    stored_depth : int
        Stored values per lane: ``groups * windows``, with ``pool`` 1 four times that.
    clear_cycles : int
        Cycles of the clear sequence after reset (``stored_depth``).

    Members
    -------
    touched : In(WindowStream(H, W))
        Pool windows ``(py, px)`` touched in the frame, duplicates allowed, then an
        ``end_of_frame`` beat given once every accumulator of the frame is written.
    read : Out(AccumulatorReadSignature(address_width, accumulator_width, lanes))
        Reads of the accumulators, window address ``(g * H/2 + py) * W/2 + px``, the
        window's ``4 x lanes`` accumulators one cycle after ``en`` (held while ``en`` is low);
        used only between the ``end_of_frame`` transfer on ``touched`` and ``done``, pulsed
        once per frame; with early evaluation also during the frame, for final windows.
    events : Out(EventStream(Cout, H/pool, W/pool))
        Output events ``(o, y, x, delta)``, delta in -255..255, then one ``end_of_frame``
        beat per frame.
    shift : In(5)
        Requantization shift s. Change it only between frames (after a frame's
        ``end_of_frame`` on ``events``, before the next one's on ``touched``): the stored map
        is not recomputed, so a new shift shows only in windows touched after the change
        (reset after changing it to restart from the reset state, as SPEC's fixed ``shift``
        implies). Not used by the clear.
    output_threshold : In(8)
        U: a lane fires where ``|P - R| > U``; 0 gives an event wherever the map changed.
        Change it only between frames, as ``shift``. Only listed windows are compared, so a
        lowered U shows only in windows touched after the change: a difference held back
        elsewhere stays until then (SPEC's fixed ``output_threshold`` never meets this; a frame
        that touches every window, as a dense one does, or a reset starts afresh).
    dense : In(1)
        Dense mode (the contract's every-stage-dense baseline): every read gives an event on
        every lane, its delta possibly 0, and writes P back. Change it only between frames.

    Raises
    ------
    TypeError
        A parameter is not an integer.
    ValueError
        A parameter is out of range, a frame side is odd, ``lanes`` does not divide
        ``channels_out``, ``pool`` is not 1 or 2.
    """

    def __init__(self, *, height, width, channels_out, accumulator_width, lanes=1, pool=2,
                 target=GENERIC, row_slack=None):
        pool = ranges.one_of("pool", pool, POOLS)
        height = _frame_side("height", height, pool)
        width = _frame_side("width", width, pool)
        channels_out = ranges.integer("channels_out", channels_out, 1, ranges.MAX_CHANNELS)
        accumulator_width = ranges.integer("accumulator_width", accumulator_width, 1,
                                           MAX_ACCUMULATOR_WIDTH)
        lanes = ranges.lanes_divide("lanes", lanes, channels_out)
        self.target = checked_target(target)
        if row_slack is not None:
            row_slack = ranges.integer("row_slack", row_slack, 0, ranges.MAX_FRAME_SIDE)
        self.row_slack = row_slack
        #: The windows no later beat can touch are evaluated while the frame runs.
        self.early = target.pool_read_port and row_slack is not None

        self.height, self.width = int(height), int(width)
        self.channels_out, self.lanes, self.pool = channels_out, lanes, pool
        self.accumulator_width = accumulator_width
        self.groups = channels_out // lanes
        self.windows = (self.height // 2) * (self.width // 2)
        self.address_width = bits_for_count(self.groups * self.windows)
        # Stored values per lane: one per (window, group), or per (position, window, group).
        self.stored_depth = self.groups * self.windows * (4 if pool == 1 else 1)
        self.clear_cycles = self.stored_depth
        super().__init__({
            "touched": In(WindowStream(self.height, self.width)),
            "read": Out(AccumulatorReadSignature(address_width=self.address_width,
                                                 accumulator_width=accumulator_width,
                                                 lanes=lanes,
                                                 registered=target.registered_reader,
                                                 paced=target.spram_accumulators)),
            "events": Out(EventStream(channels_out, self.height // pool, self.width // pool)),
            "shift": In(5),
            "output_threshold": In(8),
            "dense": In(1),
        })

    @classmethod
    def from_config(cls, config, *, lanes=None, target=GENERIC):
        """The pool for a :class:`~eventconv.core.config.Config` (its ``lanes`` unless given)."""
        checked_config(config)
        return cls(height=config.height, width=config.width,
                   channels_out=config.channels_out,
                   accumulator_width=config.accumulator_width,
                   lanes=config.lanes if lanes is None else lanes, pool=config.pool,
                   target=target)

    def elaborate(self, platform):
        m = Module()
        # The stages below share their signals through ``s``, in the order they are built.
        s = self._shapes()
        self._memories(m, s)
        self._collection(m, s)
        self._issue(m, s)
        self._fetch(m, s)
        self._maximum(m, s)
        self._difference(m, s)
        self._decision(m, s)
        self._output(m, s)
        self._collection_control(m, s)
        self._clear(m, s)
        if self.early:
            self._early_control(m, s)
        else:
            self._control(m, s)
        return m

    def _shapes(self):
        """The layouts and sizes the stages share (no hardware)."""
        s = SimpleNamespace()
        h, w, lanes = self.height, self.width, self.lanes
        s.pooled_height, s.pooled_width = h // 2, w // 2
        # With pool 1 each (window, group) is issued once per position q of the window (y
        # offset q[1], x offset q[0]); the stored map's address is the read's with q below.
        s.by_position = self.pool == 1
        s.lane_accumulators = data.ArrayLayout(signed(self.accumulator_width), lanes)
        s.lane_deltas = data.ArrayLayout(DELTA_SHAPE, lanes)
        s.lane_values = data.ArrayLayout(POOLED_SHAPE, lanes)
        s.window_shape = data.StructLayout({"y": unsigned(bits_for_count(s.pooled_height)),
                                            "x": unsigned(bits_for_count(s.pooled_width))})
        # What the pipeline carries from the fetch on: the window, or with pool 1 the position
        # (window coordinates with q's bits below).
        s.position_shape = s.window_shape if not s.by_position else data.StructLayout(
            {"y": unsigned(bits_for_count(h)), "x": unsigned(bits_for_count(w))})
        # With W/2 a power of two a window's address is its coordinates side by side. Else
        # the list holds the address beside the coordinates: no multiply between the list's
        # block RAM and the read address register.
        s.address_in_list = s.pooled_width & (s.pooled_width - 1) != 0
        list_fields = {"window": s.window_shape}
        if s.address_in_list:
            list_fields["address"] = unsigned(bits_for_count(self.windows))
        s.list_shape = data.StructLayout(list_fields)
        # The bitmap is addressed by the coordinates side by side (x low), not by the window
        # address: no arithmetic between the incoming beat and the read port, nor on the write
        # address that Yosys compares with it (it emulates the read port's behaviour when both
        # meet). Up to twice the bits, of a one-bit memory.
        s.x_bits = (s.pooled_width - 1).bit_length()
        s.ram_registers = self.target.ram_read_register
        return s

    def _bitmap_address(self, s, window):
        return Cat(window.x[:s.x_bits], window.y)

    def _window_address(self, s, window):
        if not s.address_in_list:
            return Cat(window.x[:(s.pooled_width - 1).bit_length()], window.y)
        return times(window.y, s.pooled_width) + window.x

    def _memories(self, m, s):
        """The bitmap, the window list and the stored values (one memory per lane)."""
        # With ``target.ram_read_register`` every read port's data goes into flip-flops and
        # nothing else, without Yosys's read-during-write logic: no read whose word is used
        # meets a write of that word. The bitmap's forwarding covers the windows of the two
        # stages ahead; the list is read after the frame's last write (an entry is written in
        # the deciding stage at the latest the cycle before the end_of_frame beat gets there,
        # and the first read that counts is on the edge after that; the clear's list writes
        # meet only reads of entry 0 whose word is read again before it is used; with early
        # evaluation an entry is read only once it is below the count, a cycle after its
        # write); a stored value is read once per frame (its write back comes later in the
        # pipeline), and the frames' reads do not overlap.
        ram_registers = s.ram_registers
        unchecked = NO_RW_CHECK if ram_registers else None
        m.submodules.bitmap = bitmap = Memory(shape=1, depth=s.pooled_height << s.x_bits,
                                              init=[], attrs=unchecked)
        if not ram_registers:
            bitmap_read, bitmap_write = bitmap.read_port(), bitmap.write_port()
        else:
            bitmap_read = UncheckedReadPort(m, bitmap, name="bitmap_read")
            bitmap_write = bitmap.write_port()
        m.submodules.window_list = window_list = Memory(shape=s.list_shape, depth=self.windows,
                                                        init=[], attrs=unchecked)
        if not ram_registers:
            list_read, list_write = window_list.read_port(), window_list.write_port()
        else:
            list_read = UncheckedReadPort(m, window_list, name="list_read")
            list_write = window_list.write_port()
        pooled_reads, pooled_writes = [], []
        for j in range(self.lanes):
            m.submodules[f"pooled_{j}"] = pooled = Memory(shape=POOLED_SHAPE,
                                                          depth=self.stored_depth, init=[],
                                                          attrs=unchecked)
            pooled_reads.append(pooled.read_port() if not ram_registers else
                                UncheckedReadPort(m, pooled, name=f"pooled_read_{j}"))
            pooled_writes.append(pooled.write_port())
        s.bitmap_read, s.bitmap_write = bitmap_read, bitmap_write
        s.list_read, s.list_write = list_read, list_write
        s.pooled_reads, s.pooled_writes = pooled_reads, pooled_writes

    def _collection(self, m, s):
        """The state flags and the collection of touched windows (stage 1 takes a beat and
        reads its bitmap bit, stage 2, or 3, decides)."""
        windows = self.windows
        # The state, one hot: every control decision below starts from flip-flops (and a few
        # flags registered beside them), so it stays a few LUT levels deep.
        clearing = Signal(init=1)   # writing the reset contents
        listing = Signal(init=1)    # the clear's first pass over the windows: each listed
        collecting = Signal()       # taking touched windows
        starting = Signal()         # the end of frame arrived; fetch the first listed window
        issuing = Signal()          # one accumulator read per listed (window, group[, q])
        finishing = Signal()        # every read issued; the last one's data not yet taken
        clear_address = Signal(range(self.stored_depth))
        s.clearing, s.listing, s.collecting = clearing, listing, collecting
        s.starting, s.issuing, s.finishing = starting, issuing, finishing
        s.clear_address = clear_address

        # Collection: stage 1 takes a beat and reads its bitmap bit, stage 2 decides.
        take = self.touched.valid & self.touched.ready
        second_valid, second_end = Signal(), Signal()
        second_window = Signal(s.window_shape)
        second_address = Signal(range(windows))
        # The window stage 2 handled last cycle: its bitmap write is not yet visible to the
        # read of the window now in stage 2. Compared by coordinates a stage early.
        repeated = Signal()
        count = Signal(range(windows + 1))
        # Registered compares of ``count``: it is still while they are used (from the cycle
        # after the end_of_frame beat reached stage 2 until the frame's reads are done).
        count_is_zero = Signal(init=1)
        count_is_one = Signal()
        m.d.sync += [count_is_zero.eq(count == 0), count_is_one.eq(count == 1)]

        m.d.comb += [
            s.bitmap_read.addr.eq(self._bitmap_address(s, self.touched.payload)),
            s.bitmap_read.en.eq(take),
        ]
        window_beat = second_valid & ~second_end

        # ``decide``: the stage that decides. Stage 2, or with ``target.ram_read_register`` stage 3,
        # which takes stage 2's beat and its bitmap bit as it leaves the RAM; the beat taken
        # then must also look past the window in stage 3 (its bit is written on the edge that
        # reads the new beat's).
        decide = {"valid": second_valid, "end": second_end, "window": second_window,
                  "address": second_address, "listed": s.bitmap_read.data,
                  "repeated": repeated}
        repeat = (window_beat & (self.touched.payload.y == second_window.y) &
                  (self.touched.payload.x == second_window.x))
        if self.target.ram_read_register:
            decide = third = register_stage(m, decide, "third", reset_less=("listed",))
            repeat |= (third["valid"] & ~third["end"] &
                       (self.touched.payload.y == third["window"].y) &
                       (self.touched.payload.x == third["window"].x))
        m.d.sync += [
            second_valid.eq(take),
            second_end.eq(self.touched.payload.end_of_frame),
            second_window.y.eq(self.touched.payload.y),
            second_window.x.eq(self.touched.payload.x),
            second_address.eq(self._window_address(s, self.touched.payload)),
            repeated.eq(repeat),
        ]
        s.new_window = (decide["valid"] & ~decide["end"] &
                        ~(decide["listed"] | decide["repeated"]))
        s.decide, s.second_valid, s.second_end = decide, second_valid, second_end
        s.count, s.count_is_zero, s.count_is_one = count, count_is_zero, count_is_one

        # The frame's end_of_frame beat is owed: it goes out once the pipeline is empty.
        end_pending = Signal()
        s.end_pending = end_pending

    def _issue(self, m, s):
        """The result slots' registers, and the issue: one accumulator read per listed
        (window, group), with pool 1 per position of it, and the clear's and the collection's
        list writes."""
        lanes, groups, windows = self.lanes, self.groups, self.windows
        by_position, ram_registers = s.by_position, s.ram_registers
        # Result slots: ``result`` gives its lanes that fire to ``events``; ``waiting`` holds
        # the next read whose lanes fire while ``result`` is busy. The pipeline moves
        # while ``waiting`` is empty: a register, so ``events.ready`` reaches no memory enable.
        result_mask, waiting_mask = Signal(lanes), Signal(lanes)
        result_delta, waiting_delta = Signal(s.lane_deltas), Signal(s.lane_deltas)
        result_group, waiting_group = Signal(range(groups)), Signal(range(groups))
        result_window, waiting_window = Signal(s.position_shape), Signal(s.position_shape)
        waiting_full = Signal()     # waiting_mask != 0, as a flip-flop
        advance = Signal()
        # Paced reads (single-port accumulators) hold the whole pipeline while one runs.
        paced = self.target.spram_accumulators
        m.d.comb += advance.eq(~waiting_full & (~self.read.wait if paced else 1))
        s.result = SimpleNamespace(mask=result_mask, delta=result_delta, group=result_group,
                                   window=result_window)
        s.waiting = SimpleNamespace(mask=waiting_mask, delta=waiting_delta, group=waiting_group,
                                    window=waiting_window, full=waiting_full)
        s.advance = advance

        if self.early:
            self._early_issue(m, s)
            self._list_writes(m, s)
            return
        # Issue: the read of (window `current`, group `group`), with pool 1 once per position
        # `position`. The list read port reads the entry `next_index`, a cycle before it is
        # needed: with two groups or more, or pool 1, a window lasts two cycles at least, so
        # the address comes straight from a flip-flop. With one group and pool 2 the port
        # looks one window ahead: its address is the value `next_index` has on the next cycle.
        next_index = Signal(range(windows + 1))
        next_index_plus_one = Signal(range(windows + 2), init=1)
        current = Signal(s.window_shape, reset_less=ram_registers)
        group = Signal(range(groups))
        last_group = Signal(init=groups == 1)       # group == groups - 1
        last_window = Signal()                      # next_index == count
        issue = Signal()
        # ``step``: the issue that ends a (window, group), moving to the next group or window.
        step = issue
        s.position = None
        if by_position:
            position = Signal(2)
            last_position = Signal()                # position == 3
            with m.If(issue):
                m.d.sync += [position.eq(position + 1), last_position.eq(position == 2)]
            step = issue & last_position
            s.position = position
        last_issue = step & last_group & last_window
        start_list = s.starting & ~s.end_pending
        # The read address (g * H/2 + py) * W/2 + px, kept in a register: loaded with the
        # window's address and stepped by one group's windows, so no multiply feeds the RAM.
        address = Signal(range(groups * windows))
        read_address = address
        # With ``target.ram_read_register`` the list's read data goes into ``current`` (and the
        # window's address into ``base`` when the list holds it) with an enable only: the
        # window's own address is the first group's read address, and ``address`` steps from
        # it by one group's windows for the next groups. The clear then counts its windows
        # with ``clear_window``, not with ``current``.
        clear_window = current
        s.first_group = s.base = None
        if ram_registers:
            clear_window = Signal(s.window_shape)
            first_group = Signal(init=1)        # group == 0
            base = (Signal(range(windows), reset_less=True) if s.address_in_list
                    else self._window_address(s, current))
            read_address = Signal(range(groups * windows))
            m.d.comb += read_address.eq(Mux(first_group, base, address) if groups > 1
                                        else base)
            s.first_group, s.base = first_group, base
        next_window = step & last_group
        m.d.comb += [
            issue.eq(s.issuing & advance),
            s.list_read.addr.eq(next_index if groups > 1 or by_position else
                                Mux(start_list | next_window, next_index_plus_one,
                                    next_index)),
            s.list_read.en.eq(1),
            self.read.addr.eq(read_address),
            self.read.en.eq(issue),
        ]
        s.next_index, s.next_index_plus_one = next_index, next_index_plus_one
        s.current, s.group, s.last_group, s.last_window = current, group, last_group, last_window
        s.issue, s.step, s.last_issue, s.start_list = issue, step, last_issue, start_list
        s.address, s.read_address, s.clear_window = address, read_address, clear_window
        s.next_window = next_window
        self._list_writes(m, s)

    def _list_writes(self, m, s):
        """The clear's and the collection's writes into the window list."""
        # The clear lists every window in order: entry i is window i (and its address i).
        m.d.comb += [
            s.list_write.addr.eq(s.count),
            s.list_write.data.window.eq(Mux(s.clearing, s.clear_window.as_value(),
                                            s.decide["window"].as_value())),
            *([s.list_write.data.address.eq(Mux(s.clearing, s.count, s.decide["address"]))]
              if s.address_in_list else []),
            s.list_write.en.eq(s.new_window | s.listing),
        ]

    def _early_issue(self, m, s):
        """The issue with early evaluation: the list is a queue, its head loaded into the issue
        registers as soon as it is listed, and read once final (its row below ``final_rows``,
        or after the frame's end), also while the collection goes on."""
        groups, windows = self.groups, self.windows
        head = Signal(range(windows + 1))           # the next entry to load
        ahead = Signal()                            # the list's read data is a listed entry
        loaded = Signal()                           # the issue registers hold an entry
        current = Signal(s.window_shape)
        group = Signal(range(groups))
        first_group = Signal(init=1)
        last_group = Signal(init=groups == 1)
        address = Signal(range(groups * windows))
        final_rows = Signal(range(s.pooled_height + 1))
        draining = Signal()                         # the frame's end has been decided
        # The loaded window is final, a register: decided as it is loaded, and from then on
        # as the final rows rise or the frame ends (a cycle late, which is safe), so no
        # compare sits in front of the read enables.
        final = Signal()
        # The collection writes the bitmap this cycle: a window's first read, which clears its
        # bit, waits.
        issue = loaded & final & s.advance & ~s.end_pending & ~(first_group & s.new_window)
        step = issue
        s.position = None
        if s.by_position:
            position = Signal(2)
            last_position = Signal()
            with m.If(issue):
                m.d.sync += [position.eq(position + 1), last_position.eq(position == 2)]
            step = issue & last_position
            s.position = position
        entry_done = step & last_group
        load = (~loaded | entry_done) & ahead & ~s.clearing
        # Not while the previous frame's end of frame is owed: an empty frame's done would
        # leave one end_pending for two frames.
        done = draining & ~s.end_pending & ~ahead & (~loaded | entry_done)
        m.d.comb += [
            s.list_read.addr.eq(Mux(load, head + 1, head)),
            s.list_read.en.eq(1),
            self.read.addr.eq(address),
            self.read.en.eq(issue),
        ]
        m.d.sync += ahead.eq(~done & Mux(load, head + 1 < s.count, head < s.count))
        list_data = s.list_read.data
        m.d.sync += final.eq(Mux(load, draining | (list_data.window.y < final_rows),
                                 final | draining | (current.y < final_rows)))
        with m.If(load):
            m.d.sync += [
                head.eq(head + 1), loaded.eq(1), current.eq(list_data.window),
                address.eq(list_data.address if s.address_in_list
                           else self._window_address(s, list_data.window)),
                group.eq(0), first_group.eq(1), last_group.eq(groups == 1),
            ]
        with m.Elif(entry_done):
            m.d.sync += loaded.eq(0)
        with m.Elif(step):
            m.d.sync += [group.eq(group + 1), first_group.eq(0),
                         last_group.eq(group == groups - 2), address.eq(address + windows)]
        s.head, s.loaded, s.draining, s.final_rows = head, loaded, draining, final_rows
        s.current, s.group, s.first_group, s.last_group = current, group, first_group, last_group
        s.issue, s.step, s.last_issue, s.done = issue, step, Const(0), done
        s.address = s.read_address = address
        # The clear counts its windows with a register of its own (``current`` is loaded from
        # the list while it runs).
        s.clear_window = Signal(s.window_shape)

    def _fetch(self, m, s):
        """The fetch (the read's data out, registered as it is), ``read.done``, and the
        accumulator words registered."""
        groups, stored_depth = self.groups, self.stored_depth
        advance = s.advance
        # Fetch: the read's data is out and registered as it is. From here on the stages
        # carry the stored value's address and, with pool 1, the position.
        fetched_valid, fetched_last = Signal(), Signal()
        words_valid = Signal()
        fetched_group = Signal(range(groups))
        fetched_window = Signal(s.position_shape)
        fetched_address = Signal(range(stored_depth))
        with m.If(advance):
            m.d.sync += [
                fetched_valid.eq(s.issue),
                fetched_last.eq(s.last_issue),
                fetched_group.eq(s.group),
            ]
            if not s.by_position:
                m.d.sync += [fetched_window.eq(s.current), fetched_address.eq(s.read_address)]
            else:
                m.d.sync += [
                    fetched_window.y.eq(Cat(s.position[1], s.current.y)),
                    fetched_window.x.eq(Cat(s.position[0], s.current.x)),
                    fetched_address.eq(Cat(s.position, s.read_address)),
                ]

        # The accumulators are free once the last read's data is taken: with
        # ``target.ram_read_register`` the read's data register is the unit's (``read.take``
        # loads it as the stage after fetch moves), so once it has moved past that register
        # too. ``taken`` is that moment.
        done = Signal()
        taken = advance & fetched_valid & fetched_last
        registered = self.target.registered_reader
        if registered:
            words_last = Signal()
            taken = advance & words_valid & words_last
            m.d.comb += self.read.take.eq(advance)
        m.d.comb += [
            # Early evaluation: the last read's words are latched as it is issued, in the
            # reader's own port, so the accumulators are free from then on.
            done.eq(s.done if self.early else taken | (s.start_list & s.count_is_zero)),
            self.read.done.eq(done),
        ]

        if self.target.spram_accumulators:
            # Paced reads: the unit's data is registered already (three words in its
            # flip-flops, the last in the SPRAM's output register) and holds until the next
            # read, which comes only as the fetch moves on: no register stage of our own.
            s.taken, s.fetched_valid, s.words_valid = taken, fetched_valid, Const(0)
            s.words = SimpleNamespace(valid=fetched_valid, data=self.read.data,
                                      group=fetched_group, window=fetched_window,
                                      address=fetched_address)
            return
        # The read data is registered as it arrives, and the max of four is taken as two
        # levels of two, each its own stage: the block RAM's clock to output and a wide signed
        # compare chain do not share a cycle. With pool 1 the same two levels select the
        # position instead: its column, then its row.
        words = Signal(data.ArrayLayout(s.lane_accumulators, 4))
        if registered:
            words = self.read.data
            with m.If(advance):
                m.d.sync += words_last.eq(fetched_last)
        words_group = Signal(range(groups))
        words_window = Signal(s.position_shape)
        words_address = Signal(range(stored_depth))
        with m.If(advance):
            m.d.sync += [
                words_valid.eq(fetched_valid),
                *([] if registered else [words.eq(self.read.data)]),
                words_group.eq(fetched_group),
                words_window.eq(fetched_window),
                words_address.eq(fetched_address),
            ]
        s.taken, s.fetched_valid, s.words_valid = taken, fetched_valid, words_valid
        s.words = SimpleNamespace(valid=words_valid, data=words, group=words_group,
                                  window=words_window, address=words_address)
        if registered:
            s.words = self._landed(m, s)

    def _landed(self, m, s):
        """With ``target.ram_read_register``: the words (the RAM's own output register)
        registered again in flip-flops beside the pool, so the RAM's data crosses the chip
        in a cycle of its own, not on the way into the compare chain."""
        words = s.words
        landed_valid = Signal()
        landed = Signal(data.ArrayLayout(s.lane_accumulators, 4), reset_less=True)
        landed_group = Signal(range(self.groups))
        landed_window = Signal(s.position_shape)
        landed_address = Signal(range(self.stored_depth))
        with m.If(s.advance):
            m.d.sync += [
                landed_valid.eq(words.valid),
                landed.eq(words.data),
                landed_group.eq(words.group),
                landed_window.eq(words.window),
                landed_address.eq(words.address),
            ]
        return SimpleNamespace(valid=landed_valid, data=landed, group=landed_group,
                               window=landed_window, address=landed_address)

    def _maximum(self, m, s):
        """The max of four as two levels of two (pool 1: the position's column, then row)."""
        lanes, groups, stored_depth = self.lanes, self.groups, self.stored_depth
        advance, by_position, words = s.advance, s.by_position, s.words
        pairs_valid = Signal()
        pairs = Signal(data.ArrayLayout(s.lane_accumulators, 2))
        pairs_group = Signal(range(groups))
        pairs_window = Signal(s.position_shape)
        pairs_address = Signal(range(stored_depth))
        with m.If(advance):
            m.d.sync += [
                pairs_valid.eq(words.valid),
                pairs_group.eq(words.group),
                pairs_window.eq(words.window),
                pairs_address.eq(words.address),
            ]
            for half in range(2):
                for j in range(lanes):
                    left, right = words.data[2 * half][j], words.data[2 * half + 1][j]
                    m.d.sync += pairs[half][j].eq(_larger(left, right) if not by_position else
                                                  Mux(words.window.x[0], right, left))

        maximum_valid = Signal()
        maximum = Signal(s.lane_accumulators)
        maximum_group = Signal(range(groups))
        maximum_window = Signal(s.position_shape)
        maximum_address = Signal(range(stored_depth))
        with m.If(advance):
            m.d.sync += [
                maximum_valid.eq(pairs_valid),
                maximum_group.eq(pairs_group),
                maximum_window.eq(pairs_window),
                maximum_address.eq(pairs_address),
            ]
            for j in range(lanes):
                top, bottom = pairs[0][j], pairs[1][j]
                m.d.sync += maximum[j].eq(_larger(top, bottom) if not by_position else
                                          Mux(pairs_window.y[0], bottom, top))
        s.pairs_valid, s.pairs_address = pairs_valid, pairs_address
        s.maximum = SimpleNamespace(valid=maximum_valid, data=maximum, group=maximum_group,
                                    window=maximum_window, address=maximum_address)

    def _difference(self, m, s):
        """Requantize, read the stored values R beside, and take P - R and |P - R|."""
        lanes, groups, stored_depth = self.lanes, self.groups, self.stored_depth
        advance, ram_registers, maximum = s.advance, s.ram_registers, s.maximum
        # Requantize, registered (a variable shift: its own stage).
        over = _over_mask(m, self.shift, self.accumulator_width)
        scaled_valid = Signal()
        scaled = Signal(s.lane_values)
        scaled_group = Signal(range(groups))
        scaled_window = Signal(s.position_shape)
        scaled_address = Signal(range(stored_depth))
        with m.If(advance):
            m.d.sync += [
                scaled_valid.eq(maximum.valid),
                scaled_group.eq(maximum.group),
                scaled_window.eq(maximum.window),
                scaled_address.eq(maximum.address),
            ]
            for j in range(lanes):
                m.d.sync += scaled[j].eq(_requantize(maximum.data[j], self.shift, over))
        # The stored values are read a stage early and registered beside the requantized
        # maxima, so the subtraction and the result slots start from flip-flops, not block RAM.
        # Each (window, group) (with pool 1 each position of it) comes once per frame and a
        # frame's reads wait for the previous frame's pipeline to empty, so no write back is
        # pending for the address read.
        # With ``target.ram_read_register`` they are read a stage earlier still and registered
        # twice, in ``stored_early`` (on the ECP5 the RAM's own output register) and in
        # ``stored`` beside the logic: the RAM's data does not cross the chip into the compare.
        stored = Signal(s.lane_values, reset_less=ram_registers)
        for j, port in enumerate(s.pooled_reads):
            if not ram_registers:
                m.d.comb += [port.addr.eq(s.pairs_address),
                             port.en.eq(advance & s.pairs_valid)]
                with m.If(advance):
                    m.d.sync += stored[j].eq(port.data)
            else:
                stored_early = Signal(POOLED_SHAPE, name=f"stored_early_{j}", reset_less=True)
                m.d.comb += [port.addr.eq(s.words.address),
                             port.en.eq(advance & s.words.valid)]
                with m.If(advance):
                    m.d.sync += [stored_early.eq(port.data), stored[j].eq(stored_early)]

        # Difference: P - R and |P - R| registered beside P, |P - R| from P - R and R - P
        # side by side (one carry chain deep, then a choice).
        difference_valid = Signal()
        difference_value = Signal(s.lane_values)
        difference_delta = Signal(s.lane_deltas)
        difference_magnitude = Signal(s.lane_values)
        difference_group = Signal(range(groups))
        difference_window = Signal(s.position_shape)
        difference_address = Signal(range(stored_depth))
        with m.If(advance):
            m.d.sync += [
                difference_valid.eq(scaled_valid),
                difference_value.eq(scaled),
                difference_group.eq(scaled_group),
                difference_window.eq(scaled_window),
                difference_address.eq(scaled_address),
            ]
            for j in range(lanes):
                up, down = scaled[j] - stored[j], stored[j] - scaled[j]
                m.d.sync += [difference_delta[j].eq(up),
                             difference_magnitude[j].eq(Mux(up[-1], down, up))]
        s.scaled_valid = scaled_valid
        s.difference = SimpleNamespace(
            valid=difference_valid, value=difference_value, delta=difference_delta,
            magnitude=difference_magnitude, group=difference_group, window=difference_window,
            address=difference_address)

    def _decision(self, m, s):
        """The compare against ``output_threshold``, the decided read registered, and the
        write back of P where a lane fires (the clear writes 0)."""
        lanes, groups, stored_depth = self.lanes, self.groups, self.stored_depth
        advance, difference = s.advance, s.difference
        # Compare: a lane fires where |P - R| > output_threshold (every lane in dense mode).
        fire = Signal(lanes)
        dense = Signal()
        threshold = Signal(8)
        m.d.sync += [dense.eq(self.dense), threshold.eq(self.output_threshold)]
        for j in range(lanes):
            m.d.comb += fire[j].eq(dense | (difference.magnitude[j] > threshold))

        # Decided: a read whose lanes fire, registered with P and its address before the
        # result slots and the write back, so the compares feed neither the slots' enables nor
        # the memories' write enables in the same cycle.
        decided_valid = Signal()
        decided_mask = Signal(lanes)
        decided_delta = Signal(s.lane_deltas)
        decided_value = Signal(s.lane_values)
        decided_group = Signal(range(groups))
        decided_window = Signal(s.position_shape)
        decided_address = Signal(range(stored_depth))
        with m.If(advance):
            m.d.sync += [
                decided_valid.eq(difference.valid & (fire != 0)),
                decided_mask.eq(fire),
                decided_delta.eq(difference.delta),
                decided_value.eq(difference.value),
                decided_group.eq(difference.group),
                decided_window.eq(difference.window),
                decided_address.eq(difference.address),
            ]
        gives = advance & decided_valid
        # Write back as the read enters a result slot: only a lane that fires sets R to P. The
        # clear writes 0.
        for j in range(lanes):
            m.d.comb += [
                s.pooled_writes[j].addr.eq(Mux(s.clearing, s.clear_address, decided_address)),
                s.pooled_writes[j].data.eq(Mux(s.clearing, 0, decided_value[j])),
                s.pooled_writes[j].en.eq(s.clearing | (gives & decided_mask[j])),
            ]
        s.gives = gives
        s.decided = SimpleNamespace(mask=decided_mask, delta=decided_delta, group=decided_group,
                                    window=decided_window)

    def _output(self, m, s):
        """The result slots: their lanes that fire to ``events``, lowest first, one per
        cycle, then the frame's ``end_of_frame`` beat."""
        lanes, advance = self.lanes, s.advance
        result, waiting, decided, gives = s.result, s.waiting, s.decided, s.gives
        # Result: the lanes that fire, lowest first, one per cycle. Plain expressions rather
        # than processes here: Icarus never runs an `always @*` whose inputs do not change
        # after time 0.
        out_free = ~self.events.valid | self.events.ready
        single = ~_many(result.mask)
        # ``result`` is empty after this cycle (the slots move then).
        result_free_after = (result.mask == 0) | (single & out_free)
        lowest = Const(0, range(lanes))
        for j in reversed(range(lanes)):
            lowest = Mux(result.mask[j], j, lowest)
        lane = Signal(range(lanes))
        m.d.comb += lane.eq(lowest)
        clear_lane = Signal(lanes)
        m.d.comb += clear_lane.eq(1 << lane)
        # ``waiting`` is filled only while ``result`` stays busy and moves up as soon as it
        # frees, so an empty ``result`` means both slots are empty.
        # The pipeline stages are all empty: kept as a flip-flop, updated as they move.
        pipeline_empty = Signal(init=1)
        with m.If(advance):
            m.d.sync += pipeline_empty.eq(~s.issue & ~s.fetched_valid & ~s.words_valid
                                          & ~s.words.valid & ~s.pairs_valid
                                          & ~s.maximum.valid
                                          & ~s.scaled_valid & ~s.difference.valid)
        end_of_frame_load = Signal()
        m.d.comb += end_of_frame_load.eq(s.end_pending & pipeline_empty & (result.mask == 0)
                                         & out_free)
        s.end_of_frame_load = end_of_frame_load

        with m.If((result.mask != 0) & out_free):
            m.d.sync += [
                self.events.valid.eq(1),
                self.events.payload.channel.eq(result.group * lanes + lane),
                self.events.payload.y.eq(result.window.y),
                self.events.payload.x.eq(result.window.x),
                self.events.payload.delta.eq(result.delta[lane]),
                self.events.payload.end_of_frame.eq(0),
                result.mask.eq(result.mask & ~clear_lane),
            ]
        with m.Elif(end_of_frame_load):
            m.d.sync += [
                self.events.valid.eq(1),
                self.events.payload.eq(0),
                self.events.payload.end_of_frame.eq(1),
            ]
        with m.Elif(self.events.ready):
            m.d.sync += self.events.valid.eq(0)

        with m.If(result_free_after):
            with m.If(waiting.full):
                m.d.sync += [
                    result.mask.eq(waiting.mask),
                    result.delta.eq(waiting.delta),
                    result.group.eq(waiting.group),
                    result.window.eq(waiting.window),
                    waiting.mask.eq(0),
                    waiting.full.eq(0),
                ]
            with m.Elif(gives):
                m.d.sync += [
                    result.mask.eq(decided.mask),
                    result.delta.eq(decided.delta),
                    result.group.eq(decided.group),
                    result.window.eq(decided.window),
                ]
        with m.Elif(gives):
            m.d.sync += [
                waiting.mask.eq(decided.mask),
                waiting.full.eq(1),
                waiting.delta.eq(decided.delta),
                waiting.group.eq(decided.group),
                waiting.window.eq(decided.window),
            ]

    def _collection_control(self, m, s):
        """``touched.ready`` and the bitmap's writes."""
        decide = s.decide
        touched_ready = s.collecting & ~(s.second_valid & s.second_end)
        if self.target.ram_read_register:
            touched_ready &= ~(decide["valid"] & decide["end"])
        # Bitmap writes: ones during the clear (every window listed), set for a new window,
        # cleared once per listed window when its first read is issued (with pool 1 for each
        # of its positions). The three never coincide (a new window comes only while
        # collecting, an issue never then), so the bit written is ``~issuing``.
        if self.early:
            # Early evaluation: a first read clears its window's bit also while collecting
            # (never in the cycle a new window sets one).
            clear_bit = s.issue & s.first_group
            m.d.comb += [
                s.bitmap_write.addr.eq(Mux(s.clearing, self._bitmap_address(s, s.clear_window),
                                           Mux(s.collecting & ~clear_bit,
                                               self._bitmap_address(s, decide["window"]),
                                               self._bitmap_address(s, s.current)))),
                s.bitmap_write.data.eq(~clear_bit),
                s.bitmap_write.en.eq(s.clearing | s.new_window | clear_bit),
                self.touched.ready.eq(touched_ready),
            ]
            return
        if not s.ram_registers:
            first_group = Signal(init=1)        # group == 0
            s.first_group = first_group
        write_address = Mux(s.collecting, self._bitmap_address(s, decide["window"]),
                            self._bitmap_address(s, s.current))
        if s.ram_registers:
            write_address = Mux(s.clearing, self._bitmap_address(s, s.clear_window),
                                write_address)
        m.d.comb += [
            # The clear counts its windows with ``clear_window`` (``current`` without
            # ``target.ram_read_register``).
            s.bitmap_write.addr.eq(write_address),
            s.bitmap_write.data.eq(~s.issuing),
            s.bitmap_write.en.eq(s.clearing | s.new_window | (s.issue & s.first_group)),
            self.touched.ready.eq(touched_ready),
        ]

    def _clear(self, m, s):
        """The clear after reset: every stored value 0, every window listed."""
        stored_depth, clear_window = self.stored_depth, s.clear_window
        # The clear's last address, registered a cycle ahead. Its first pass over the windows
        # lists them.
        clear_last = Signal(init=stored_depth == 1)
        with m.If(s.clearing):
            m.d.sync += [s.clear_address.eq(s.clear_address + 1),
                         clear_last.eq(s.clear_address == stored_depth - 2)]
            with m.If(clear_window.x == s.pooled_width - 1):
                m.d.sync += clear_window.x.eq(0)
                with m.If(clear_window.y == s.pooled_height - 1):
                    m.d.sync += [clear_window.y.eq(0), s.listing.eq(0)]
                with m.Else():
                    m.d.sync += clear_window.y.eq(clear_window.y + 1)
            with m.Else():
                m.d.sync += clear_window.x.eq(clear_window.x + 1)
        s.clear_last = clear_last

    def _early_control(self, m, s):
        """With early evaluation: the state flags, the final rows and the list's count.
        Transitions: clear -> collect (reads of final windows alongside) -> drain (the frame's
        end decided: the rest of the list read) -> collect."""
        decide, done = s.decide, s.done
        clear_end = s.clearing & s.clear_last
        to_drain = s.collecting & decide["valid"] & decide["end"]
        m.d.sync += [
            s.clearing.eq(s.clearing & ~s.clear_last),
            s.collecting.eq((s.collecting & ~to_drain) | clear_end | done),
            s.draining.eq((s.draining & ~done) | to_drain),
            s.end_pending.eq((s.end_pending & ~s.end_of_frame_load) | done),
        ]
        # Rows below ``final_rows`` are final: a beat's window lies at most ``row_slack`` rows
        # below any window a later beat touches (its event's row, the kernel's reach, and how
        # far back in rows a later input event may come).
        window_y = decide["window"].y
        with m.If(done):
            m.d.sync += [s.final_rows.eq(0), s.head.eq(0), s.count.eq(0)]
        with m.Else():
            with m.If(decide["valid"] & ~decide["end"] & (window_y > s.final_rows
                                                         + self.row_slack)):
                m.d.sync += s.final_rows.eq(window_y - self.row_slack)
            with m.If(s.new_window | s.listing):
                m.d.sync += s.count.eq(s.count + 1)

    def _control(self, m, s):
        """The state flags' next values, the issue registers and the list's count."""
        groups, windows = self.groups, self.windows
        starting, finishing = s.starting, s.finishing
        group, last_group, address = s.group, s.last_group, s.address
        next_index, next_index_plus_one = s.next_index, s.next_index_plus_one
        # The control, each flag's next value spelled out (a few flags each, no priority
        # chains). Transitions: clear -> collect -> start -> (collect | issue -> finish ->
        # collect).
        clear_end = s.clearing & s.clear_last
        to_start = s.collecting & s.decide["valid"] & s.decide["end"]
        start_empty = s.start_list & s.count_is_zero
        start_first = s.start_list & ~s.count_is_zero
        finished = s.taken     # only while finishing
        m.d.sync += [
            s.clearing.eq(s.clearing & ~s.clear_last),
            s.collecting.eq((s.collecting & ~to_start) | clear_end | start_empty | finished),
            starting.eq((starting & s.end_pending) | to_start),
            s.issuing.eq((s.issuing & ~s.last_issue) | start_first),
            finishing.eq((finishing & ~finished) | s.last_issue),
            s.end_pending.eq((s.end_pending & ~s.end_of_frame_load) | start_empty
                             | s.last_issue),
        ]

        # The issue registers move at the start and with each ``step`` (each issue with pool
        # 2), each a two-way choice on flip-flops: the list's next window (at the start, or
        # after the last group; after the last window the values loaded are not used) or the
        # next group.
        from_list = starting | last_group
        list_data = s.list_read.data
        with m.If(start_first | s.step):
            m.d.sync += [
                group.eq(Mux(from_list, 0, group + 1)),
                s.first_group.eq(from_list),
                last_group.eq(Mux(from_list, groups == 1,
                                  group == groups - 2 if groups > 1 else 1)),
            ]
            if not s.ram_registers:
                with m.If(from_list):
                    m.d.sync += [s.current.eq(list_data.window),
                                 address.eq(list_data.address if s.address_in_list
                                            else self._window_address(s, list_data.window))]
                with m.Else():
                    m.d.sync += address.eq(address + windows)
            else:
                m.d.sync += address.eq(s.read_address + windows)
                with m.If(from_list):
                    m.d.sync += s.current.eq(list_data.window)
                    if s.address_in_list:
                        m.d.sync += s.base.eq(list_data.address)
        with m.If(start_first | s.next_window | finished):
            m.d.sync += [
                next_index.eq(Mux(starting, 1, Mux(finishing, 0, next_index_plus_one))),
                next_index_plus_one.eq(Mux(starting, 2, Mux(finishing, 1,
                                                             next_index_plus_one + 1))),
                s.last_window.eq(Mux(starting, s.count_is_one, next_index_plus_one == s.count)),
            ]

        with m.If(finished):
            m.d.sync += s.count.eq(0)
        with m.Elif(s.new_window | s.listing):
            m.d.sync += s.count.eq(s.count + 1)
