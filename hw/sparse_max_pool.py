"""Sparse max pool: requantize, 2 x 2 max pool and emit only the pooled values that changed.

SPEC steps 3-5, the hardware of :func:`eventconv.model.pool_stage`, with work proportional to
the pool windows a frame touched instead of to the frame size.
"""

import numbers

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import MAX_CHANNELS, MAX_FRAME_SIDE, Config
from .layouts import (
    DELTA_SHAPE,
    AccumulatorReadSignature,
    EventStream,
    WindowStream,
    bits_for_count,
)

__all__ = ["SparseMaxPool"]

MAX_ACCUMULATOR_WIDTH = 64
POOLED_SHAPE = unsigned(8)


def _integer(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    return int(value)


class _State(enum.Enum, shape=3):
    CLEAR = 0     # writing the reset contents
    COLLECT = 1   # taking touched windows
    START = 2     # the end of frame arrived; fetch the first listed window
    ISSUE = 3     # reading the listed windows' accumulators
    FINISH = 4    # release, last events, end of frame


def _requantize(value, shift):
    """SPEC step 3 on a signed accumulator: ``min(255, max(0, value) >> shift)``."""
    magnitude = Mux(value < 0, 0, value.as_unsigned())
    shifted = magnitude >> shift
    return Mux(shifted > 255, 255, shifted[:8])


class SparseMaxPool(wiring.Component):
    """Requantize, 2 x 2 max pool and sparse output of the accumulators (SPEC steps 3-5).

    During a frame the pool records each window given on ``touched`` once: a bitmap of
    ``(H/2) * (W/2)`` bits says which windows are already listed, and a list memory holds them
    in order of first arrival. One ``touched`` beat is taken per clock; a window repeated on
    the next cycle, whose bitmap bit is still being written, is recognised by forwarding.

    After the ``end_of_frame`` beat on ``touched`` the accumulators are read through ``read``.
    For each listed window and each channel group g (lanes j, output channels
    ``o = g * lanes + j``) the four accumulators of the window are read, one per cycle, and
    max-pooled as raw signed values (requantization is monotonic, so the max commutes with it),
    then requantized, ``a = min(255, max(0, acc) >> shift)``, and compared with the stored last
    pooled value ``P[o][py][px]`` (one memory per lane, uint8, address
    ``(g * H/2 + py) * W/2 + px``). Every lane whose value changed gives the output event
    ``(o, py, px, new - old)``, one per clock; the new value is written back and the window's
    bitmap bit is cleared. Then ``release`` is pulsed once and one ``end_of_frame`` beat (other
    fields 0) follows the frame's last event. Events come in list order, then group, then
    lane: deterministic for a given ``touched`` sequence.

    Throughput: ``touched`` takes one beat per clock while collecting. The end-of-frame work
    takes 4 cycles per listed (window, group), the four reads of the single read port, while
    ``events`` is ready and a group changes at most 3 lanes; a group with n > 3 changed lanes
    takes n + 1. Exactly, with ``events`` always ready, from the ``end_of_frame`` transfer on
    ``touched`` to the ``end_of_frame`` transfer on ``events``::

        4 * groups * windows_listed + 5 + n_last + sum over the other groups of max(0, n - 3)

    cycles, where n_last is the changed lanes of the last (window, group): 5 cycles for a
    frame without touched windows, whatever the frame size. The first read is issued 3
    cycles after the ``end_of_frame`` transfer; ``release`` is pulsed in the cycle the last
    read's data arrives; ``touched`` is ready again n_last + 2 cycles after ``release`` (later if
    ``events`` is not ready: the frame's last events and ``end_of_frame`` go out first). From
    a frame's ``end_of_frame`` beat on ``touched`` until then ``touched`` is not ready.

    After reset a clear sequence writes the reset pooled map, ``min(255, max(0, bias[o]) >>
    shift)`` with ``shift`` sampled every cycle of the clear, into every stored value, and
    zeros into the bitmap: ``(Cout / lanes) * (H/2) * (W/2)`` cycles (:attr:`clear_cycles`),
    with ``touched`` not ready meanwhile.

    Parameters
    ----------
    height, width : int
        Input frame size H, W: even, 2..4096.
    channels_out : int
        Cout, 1..1024.
    accumulator_width : int
        Signed width of an accumulator, 1..64 (as
        :attr:`eventconv.config.Config.accumulator_width`).
    bias : list of int, [Cout], or None
        Reset value of each output channel's accumulators; each must fit a signed
        ``accumulator_width``-bit value. None means 0.
    lanes : int
        Output channels per accumulator word (and per group), dividing ``channels_out``.

    Attributes
    ----------
    groups : int
        ``channels_out / lanes``.
    windows : int
        ``(H/2) * (W/2)``: bitmap bits and list entries.
    address_width : int
        Width of ``read.addr``, as the accumulator unit's.
    clear_cycles : int
        Cycles of the clear sequence after reset.
    cycles_per_group : int
        Cycles per (window, group) at full rate (4).

    Members
    -------
    touched : In(WindowStream(H, W))
        Pool windows ``(py, px)`` touched in the frame, duplicates allowed, then an
        ``end_of_frame`` beat given once every accumulator of the frame is written.
    read : Out(AccumulatorReadSignature(address_width, accumulator_width, lanes))
        Reads of the accumulators, address ``(g * H + y) * W + x``, data one cycle after
        ``en``; used only between the ``end_of_frame`` transfer on ``touched`` and ``release``.
    release : Out(1)
        One-cycle pulse, once per frame: done reading this frame's accumulators.
    events : Out(EventStream(Cout, H/2, W/2))
        Output events ``(o, py, px, delta)``, delta in -255..255, then one ``end_of_frame``
        beat per frame.
    shift : In(5)
        Requantization shift s. Hold it through the clear and change it only between frames:
        the stored map is not recomputed, so a new shift shows only in windows touched after
        the change (reset after changing it to restart from the reset state, as SPEC's fixed
        ``shift`` implies).

    Raises
    ------
    TypeError
        A parameter is not an integer (``bias``: not a sequence of integers).
    ValueError
        A parameter is out of range, a frame side is odd, ``lanes`` does not divide
        ``channels_out``, ``bias`` has the wrong length or a value that does not fit the
        accumulator.
    """

    cycles_per_group = 4

    def __init__(self, *, height, width, channels_out, accumulator_width, bias, lanes=1):
        for name, value in (("height", height), ("width", width)):
            _integer(name, value, 2, MAX_FRAME_SIDE)
            if value % 2:
                raise ValueError(f"{name} must be even (2 x 2 pooling) and in "
                                 f"2..{MAX_FRAME_SIDE}, not {value}")
        channels_out = _integer("channels_out", channels_out, 1, MAX_CHANNELS)
        accumulator_width = _integer("accumulator_width", accumulator_width, 1,
                                     MAX_ACCUMULATOR_WIDTH)
        lanes = _integer("lanes", lanes, 1, channels_out)
        if channels_out % lanes:
            raise ValueError(f"lanes must divide channels_out = {channels_out}, not {lanes}")
        self._bias = self._check_bias(bias, channels_out, accumulator_width)

        self.height, self.width = int(height), int(width)
        self.channels_out, self.lanes = channels_out, lanes
        self.accumulator_width = accumulator_width
        self.groups = channels_out // lanes
        self.windows = (self.height // 2) * (self.width // 2)
        self.address_width = bits_for_count(self.groups * self.height * self.width)
        self.clear_cycles = self.groups * self.windows
        super().__init__({
            "touched": In(WindowStream(self.height, self.width)),
            "read": Out(AccumulatorReadSignature(address_width=self.address_width,
                                                 accumulator_width=accumulator_width,
                                                 lanes=lanes)),
            "release": Out(1),
            "events": Out(EventStream(channels_out, self.height // 2, self.width // 2)),
            "shift": In(5),
        })

    @staticmethod
    def _check_bias(bias, channels_out, accumulator_width):
        if bias is None:
            return [0] * channels_out
        if isinstance(bias, (str, bytes)) or not hasattr(bias, "__len__"):
            raise TypeError(f"bias must be a list of channels_out = {channels_out} integers, "
                            f"not {bias!r}")
        if len(bias) != channels_out:
            raise ValueError(f"bias must be a list of channels_out = {channels_out} integers, "
                             f"not {len(bias)} values")
        lo, hi = -(1 << (accumulator_width - 1)), (1 << (accumulator_width - 1)) - 1
        for o, value in enumerate(bias):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"bias[{o}] must be an integer in {lo}..{hi} "
                                f"(accumulator_width = {accumulator_width}), not {value!r}")
            if not lo <= value <= hi:
                raise ValueError(f"bias[{o}] must be an integer in {lo}..{hi} "
                                 f"(accumulator_width = {accumulator_width}), not {value!r}")
        return [int(value) for value in bias]

    @classmethod
    def from_config(cls, config, *, lanes=None):
        """The pool for a :class:`~eventconv.config.Config` (its ``lanes`` unless given)."""
        if not isinstance(config, Config):
            raise TypeError(f"config must be an eventconv.config.Config, not {config!r}")
        return cls(height=config.height, width=config.width,
                   channels_out=config.channels_out,
                   accumulator_width=config.accumulator_width, bias=config.bias.tolist(),
                   lanes=config.lanes if lanes is None else lanes)

    def elaborate(self, platform):
        m = Module()
        h, w, lanes, groups = self.height, self.width, self.lanes, self.groups
        pooled_height, pooled_width = h // 2, w // 2
        windows = self.windows
        accumulator_shape = signed(self.accumulator_width)
        window_shape = data.StructLayout({"y": unsigned(bits_for_count(pooled_height)),
                                          "x": unsigned(bits_for_count(pooled_width))})

        m.submodules.bitmap = bitmap = Memory(shape=1, depth=windows, init=[])
        bitmap_read, bitmap_write = bitmap.read_port(), bitmap.write_port()
        m.submodules.window_list = window_list = Memory(shape=window_shape, depth=windows,
                                                        init=[])
        list_read, list_write = window_list.read_port(), window_list.write_port()
        pooled_reads, pooled_writes = [], []
        for j in range(lanes):
            m.submodules[f"pooled_{j}"] = pooled = Memory(shape=POOLED_SHAPE,
                                                          depth=groups * windows, init=[])
            pooled_reads.append(pooled.read_port())
            pooled_writes.append(pooled.write_port())

        def window_address(window):
            return window.y * pooled_width + window.x

        clearing = Signal()
        issue = Signal()
        requantize_input = Signal(data.ArrayLayout(accumulator_shape, lanes))
        requantized = Signal(data.ArrayLayout(POOLED_SHAPE, lanes))
        for j in range(lanes):
            m.d.comb += requantized[j].eq(_requantize(requantize_input[j], self.shift))

        clear_address = Signal(range(groups * windows))
        clear_group = Signal(range(groups))
        clear_position = Signal(range(windows))

        # Collection: stage 1 takes a beat and reads its bitmap bit, stage 2 decides.
        take = self.touched.valid & self.touched.ready
        second_valid, second_end = Signal(), Signal()
        second_window = Signal(window_shape)
        second_address = Signal(range(windows))
        # The window stage 2 handled last cycle: its bitmap write was not yet visible to the
        # read of the window now in stage 2.
        previous_valid = Signal()
        previous_address = Signal(range(windows))
        count = Signal(range(windows + 1))

        m.d.comb += [
            bitmap_read.addr.eq(window_address(self.touched.payload)),
            bitmap_read.en.eq(take),
        ]
        m.d.sync += [
            second_valid.eq(take),
            second_end.eq(self.touched.payload.end_of_frame),
            second_window.y.eq(self.touched.payload.y),
            second_window.x.eq(self.touched.payload.x),
            second_address.eq(window_address(self.touched.payload)),
        ]
        window_beat = second_valid & ~second_end
        seen = bitmap_read.data | (previous_valid & (previous_address == second_address))
        new_window = window_beat & ~seen
        m.d.sync += [previous_valid.eq(window_beat), previous_address.eq(second_address)]
        m.d.comb += [
            list_write.addr.eq(count),
            list_write.data.eq(second_window),
            list_write.en.eq(new_window),
        ]
        with m.If(new_window):
            m.d.sync += count.eq(count + 1)

        # Read issue: the four reads of window `current`, group `group`; read `quarter` is
        # pixel (2 py + quarter[1], 2 px + quarter[0]). The list read port always looks one
        # window ahead, at `next_index`.
        next_index = Signal(range(windows + 1))
        current = Signal(window_shape)
        group = Signal(range(groups))
        quarter = Signal(2)
        m.d.comb += [list_read.addr.eq(next_index), list_read.en.eq(1)]
        pooled_address = (group * pooled_height + current.y) * pooled_width + current.x
        m.d.comb += [
            self.read.addr.eq((group * h + current.y * 2 + quarter[1]) * w
                              + current.x * 2 + quarter[0]),
            self.read.en.eq(issue),
        ]
        for port in pooled_reads:
            m.d.comb += [port.addr.eq(pooled_address), port.en.eq(issue & (quarter == 3))]

        # Fold: data of read `data_quarter` arrives the cycle after its issue.
        data_valid = Signal()
        data_quarter = Signal(2)
        data_group = Signal(range(groups))
        data_window = Signal(window_shape)
        data_pooled_address = Signal(range(groups * windows))
        m.d.sync += [
            data_valid.eq(issue),
            data_quarter.eq(quarter),
            data_group.eq(group),
            data_window.eq(current),
            data_pooled_address.eq(pooled_address),
        ]
        running_max = Signal(data.ArrayLayout(accumulator_shape, lanes))
        window_max = Signal(data.ArrayLayout(accumulator_shape, lanes))
        for j in range(lanes):
            value = self.read.data[j]
            keep = (data_quarter != 0) & (running_max[j] > value)
            m.d.comb += window_max[j].eq(Mux(keep, running_max[j], value))
            with m.If(data_valid):
                m.d.sync += running_max[j].eq(window_max[j])
        group_done = data_valid & (data_quarter == 3)

        # Result: the changed lanes of one (window, group), given one per cycle.
        result_mask = Signal(lanes)
        result_delta = Signal(data.ArrayLayout(DELTA_SHAPE, lanes))
        result_group = Signal(range(groups))
        result_window = Signal(window_shape)
        out_free = ~self.events.valid | self.events.ready
        single = (result_mask & (result_mask - 1)) == 0
        # The result register is empty in the cycle after this one: a group's last read may
        # be issued (its result lands then).
        result_free_next = (result_mask == 0) | (single & out_free)

        # Lowest changed lane first. Plain expressions rather than processes here and below:
        # Icarus (-g2012) never runs an `always @*` whose inputs do not change after time 0.
        lowest = Const(0, range(lanes))
        for j in reversed(range(lanes)):
            lowest = Mux(result_mask[j], j, lowest)
        lane = Signal(range(lanes))
        m.d.comb += lane.eq(lowest)
        clear_lane = Signal(lanes)
        m.d.comb += clear_lane.eq(1 << lane)

        state = Signal(_State, init=_State.CLEAR)
        released = Signal()
        end_of_frame_load = Signal()
        m.d.comb += [
            clearing.eq(state == _State.CLEAR),
            self.touched.ready.eq((state == _State.COLLECT) & ~(second_valid & second_end)),
            issue.eq((state == _State.ISSUE) & ((quarter != 3) | result_free_next)),
            # First cycle of FINISH: the last read's data is being folded.
            self.release.eq((state == _State.FINISH) & ~released),
            end_of_frame_load.eq((state == _State.FINISH) & released & (result_mask == 0)
                                 & out_free),
        ]

        with m.If((result_mask != 0) & out_free):
            m.d.sync += [
                self.events.valid.eq(1),
                self.events.payload.channel.eq(result_group * lanes + lane),
                self.events.payload.y.eq(result_window.y),
                self.events.payload.x.eq(result_window.x),
                self.events.payload.delta.eq(result_delta[lane]),
                self.events.payload.end_of_frame.eq(0),
                result_mask.eq(result_mask & ~clear_lane),
            ]
        with m.Elif(end_of_frame_load):
            m.d.sync += [
                self.events.valid.eq(1),
                self.events.payload.eq(0),
                self.events.payload.end_of_frame.eq(1),
            ]
        with m.Elif(self.events.ready):
            m.d.sync += self.events.valid.eq(0)

        with m.If(group_done):
            for j in range(lanes):
                old = pooled_reads[j].data
                m.d.sync += [
                    result_mask[j].eq(requantized[j] != old),
                    result_delta[j].eq(requantized[j] - old),
                ]
            m.d.sync += [result_group.eq(data_group), result_window.eq(data_window)]

        for j in range(lanes):
            bias = Const(self._bias[j], accumulator_shape)
            for g in range(1, groups):
                bias = Mux(clear_group == g, Const(self._bias[g * lanes + j], accumulator_shape),
                           bias)
            m.d.comb += [
                requantize_input[j].eq(Mux(clearing, bias, window_max[j])),
                pooled_writes[j].addr.eq(Mux(clearing, clear_address, data_pooled_address)),
                pooled_writes[j].data.eq(requantized[j]),
                pooled_writes[j].en.eq(clearing | group_done),
            ]

        # Bitmap writes: zeros during the clear, set for a new window, cleared once per listed
        # window when its first read is issued. The three never coincide.
        first_issue = issue & (group == 0) & (quarter == 0)
        m.d.comb += [
            bitmap_write.addr.eq(Mux(clearing, clear_position,
                                     Mux(new_window, second_address, window_address(current)))),
            bitmap_write.data.eq(new_window),
            bitmap_write.en.eq(clearing | new_window | first_issue),
        ]

        with m.Switch(state):
            with m.Case(_State.CLEAR):
                m.d.sync += clear_address.eq(clear_address + 1)
                with m.If(clear_position == windows - 1):
                    m.d.sync += [clear_position.eq(0), clear_group.eq(clear_group + 1)]
                with m.Else():
                    m.d.sync += clear_position.eq(clear_position + 1)
                with m.If(clear_address == groups * windows - 1):
                    m.d.sync += state.eq(_State.COLLECT)

            with m.Case(_State.COLLECT):
                with m.If(second_valid & second_end):
                    m.d.sync += state.eq(_State.START)

            with m.Case(_State.START):
                # The list write of the frame's last window is visible to this read.
                with m.If(count == 0):
                    m.d.sync += state.eq(_State.FINISH)
                with m.Else():
                    m.d.sync += [current.eq(list_read.data), next_index.eq(1),
                                 group.eq(0), quarter.eq(0), state.eq(_State.ISSUE)]

            with m.Case(_State.ISSUE):
                with m.If(issue):
                    m.d.sync += quarter.eq(quarter + 1)
                    with m.If(quarter == 3):
                        with m.If(group == groups - 1):
                            m.d.sync += group.eq(0)
                            with m.If(next_index == count):
                                m.d.sync += state.eq(_State.FINISH)
                            with m.Else():
                                m.d.sync += [current.eq(list_read.data),
                                             next_index.eq(next_index + 1)]
                        with m.Else():
                            m.d.sync += group.eq(group + 1)

            with m.Case(_State.FINISH):
                m.d.sync += released.eq(1)
                with m.If(end_of_frame_load):
                    m.d.sync += [released.eq(0), count.eq(0), next_index.eq(0),
                                 state.eq(_State.COLLECT)]
        return m
