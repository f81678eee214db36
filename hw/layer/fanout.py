"""Fan-out: one input event becomes the accumulate ops of the kernel taps that land in the frame.

SPEC step 2: an event ``(c, y, x, d)`` adds ``d * w[o][c][ky][kx]`` to the accumulator at
``(o, y - ky + K//2, x - kx + K//2)`` for every output channel o and every tap whose output
position lies inside the frame.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from eventconv.core import ranges
from eventconv.hw.layouts import DELTA_SHAPE, EventStream, UpdateStream, times

__all__ = ["FanoutAddressGenerator"]


class FanoutAddressGenerator(wiring.Component):
    """Turns input events into accumulator update beats, one beat per clock.

    For an event ``(c, y, x, d)`` the beats walk the kernel taps (ky, kx) in raster order,
    skipping taps whose output position ``(y - ky + K//2, x - kx + K//2)`` is outside the frame,
    and for each tap every channel group ``0 .. channels_out / lanes - 1`` (groups innermost):
    the order of :func:`eventconv.core.model.fanout_updates`, each beat carrying ``lanes`` ops. The
    in-frame tap ranges are computed when the event is taken, so a border event spends no cycle
    on taps outside the frame. An ``end_of_frame`` event becomes one ``end_of_frame`` beat
    (other fields 0), after every beat of the events before it.

    Latency: the first beat of an event is valid :attr:`LATENCY` (2) cycles after the event is
    taken: a decode stage computes its in-frame ranges into registers, then the walk loads them.
    Throughput: one beat per clock while ``updates`` is ready, including across events: the next
    event, already decoded, is loaded in the cycle the last beat of the current one is
    transferred (so ``events.ready`` depends on ``updates.ready`` in that cycle). An event with
    n in-frame taps costs ``n * channels_out / lanes`` cycles; an end of frame costs one.

    Parameters
    ----------
    height, width : int
        Frame size, even, at least ``kernel_size`` (at least 2).
    channels_in, channels_out : int
        Cin and Cout, 1..1024.
    kernel_size : int
        K, one of 1, 3, 5, 7.
    lanes : int
        Output channels per beat; divides ``channels_out``.

    Members
    -------
    events : In(EventStream(channels_in, height, width))
        Input events.
    updates : Out(UpdateStream(channels_in, channels_out, height, width, kernel_size, lanes))
        Update beats (see :func:`eventconv.hw.layouts.update_layout`).

    Raises
    ------
    TypeError, ValueError
        See :func:`eventconv.core.ranges.geometry`.
    """

    #: Cycles from an event's transfer to its first beat valid (no stalls, walk idle).
    LATENCY = 2

    def __init__(self, *, height, width, channels_in, channels_out, kernel_size, lanes=1):
        ranges.geometry(height=height, width=width, channels_in=channels_in,
                       channels_out=channels_out, kernel_size=kernel_size, lanes=lanes)
        height, width, channels_in, channels_out, kernel_size, lanes = map(
            int, (height, width, channels_in, channels_out, kernel_size, lanes))
        self._height, self._width = height, width
        self._channels_in, self._channels_out = channels_in, channels_out
        self._kernel_size, self._lanes = kernel_size, lanes
        super().__init__({
            "events":  In(EventStream(channels_in, height, width)),
            "updates": Out(UpdateStream(channels_in, channels_out, height, width,
                                        kernel_size, lanes)),
        })

    @property
    def groups(self):
        return self._channels_out // self._lanes

    def elaborate(self, platform):
        m = Module()
        h, w, k = self._height, self._width, self._kernel_size
        pad = k // 2
        event, update = self.events.payload, self.updates.payload

        busy = Signal()
        # The walk runs over output positions (descending as the tap index ascends) so that the
        # beat's y and x are registers, not adders on the output path.
        y = Signal.like(update.y)
        x = Signal.like(update.x)
        x_first = Signal.like(update.x)
        x_last = Signal.like(update.x)
        y_last = Signal.like(update.y)
        tap = Signal.like(update.tap)
        row_tap = Signal.like(update.tap)
        group = Signal.like(update.group)
        channel = Signal.like(update.channel)
        delta = Signal(DELTA_SHAPE)
        end_of_frame = Signal()

        m.d.comb += [
            self.updates.valid.eq(busy),
            update.y.eq(y),
            update.x.eq(x),
            update.group.eq(group),
            update.channel.eq(channel),
            update.tap.eq(tap),
            update.delta.eq(delta),
            update.end_of_frame.eq(end_of_frame),
        ]

        # What the next transfer does, one-hot, kept as a register and worked out when the walk
        # state changes: so the consumer's ready meets only this register on its way to the load
        # enables (no comparator or flag logic in between).
        last_beat, next_group, next_column, next_row = (Signal(name=n) for n in (
            "last_beat", "next_group", "next_column", "next_row"))
        transfer = self.updates.valid & self.updates.ready
        groups_wrap = self.groups == 1

        def after_position(column_at_end, row_at_end):
            """Step kinds once the groups of a position are done."""
            if not groups_wrap:
                return [0, 1, 0, 0]
            return [column_at_end & row_at_end, 0, ~column_at_end, column_at_end & ~row_at_end]

        def set_kind(kinds):
            m.d.sync += [flag.eq(value) for flag, value in
                         zip((last_beat, next_group, next_column, next_row), kinds, strict=True)]

        # Decode stage: the in-frame ranges of the next event (output rows y+pad down to y-pad,
        # clipped to the frame) are computed into registers while the walk runs, so no range
        # arithmetic sits in front of the walk's registers.
        decoded = Signal()
        decoded_eof = Signal()
        decoded_channel = Signal.like(update.channel)
        decoded_delta = Signal(DELTA_SHAPE)
        first_y = Signal.like(update.y)
        first_x = Signal.like(update.x)
        last_y = Signal.like(update.y)
        last_x = Signal.like(update.x)
        first_tap = Signal.like(update.tap)
        single_row = Signal()
        single_col = Signal()
        load = Signal()
        m.d.comb += [
            load.eq(decoded & (~busy | (self.updates.ready & last_beat))),
            self.events.ready.eq(~decoded | load),
        ]
        with m.If(self.events.valid & self.events.ready):
            # Taps cut by the bottom/right border: max(0, y + pad - (h - 1)).
            cut_y = Mux(event.y > h - 1 - pad, event.y - (h - 1 - pad), 0)
            cut_x = Mux(event.x > w - 1 - pad, event.x - (w - 1 - pad), 0)
            top_y = Mux(event.y > h - 1 - pad, h - 1, event.y + pad)
            top_x = Mux(event.x > w - 1 - pad, w - 1, event.x + pad)
            bottom_y = Mux(event.y >= pad, event.y - pad, 0)
            bottom_x = Mux(event.x >= pad, event.x - pad, 0)
            m.d.sync += [
                decoded_eof.eq(event.end_of_frame),
                decoded_channel.eq(Mux(event.end_of_frame, 0, event.channel)),
                decoded_delta.eq(Mux(event.end_of_frame, 0, event.delta)),
                first_y.eq(top_y),
                first_x.eq(top_x),
                last_y.eq(bottom_y),
                last_x.eq(bottom_x),
                first_tap.eq(times(cut_y, k) + cut_x),
                single_row.eq(top_y == bottom_y),
                single_col.eq(top_x == bottom_x),
            ]
        with m.If(self.events.valid & self.events.ready):
            m.d.sync += decoded.eq(1)
        with m.Elif(load):
            m.d.sync += decoded.eq(0)

        # The walk: x and y count down to x_last and y_last; "at end" compares against the
        # value after the step (x_last + 1 kept as a register).
        x_stop = Signal(range(w + 1))
        y_stop = Signal(range(h + 1))
        single_column = Signal()
        x_at_end = Signal()
        y_at_end = Signal()
        with m.If(load):
            eof = decoded_eof
            m.d.sync += [
                busy.eq(1),
                end_of_frame.eq(eof),
                group.eq(0),
                x_at_end.eq(single_col),
                y_at_end.eq(single_row),
                channel.eq(decoded_channel),
                delta.eq(decoded_delta),
                y.eq(Mux(eof, 0, first_y)),
                x.eq(Mux(eof, 0, first_x)),
                x_first.eq(first_x),
                y_last.eq(last_y),
                x_last.eq(last_x),
                x_stop.eq(last_x + 1),
                y_stop.eq(last_y + 1),
                single_column.eq(single_col),
                tap.eq(Mux(eof, 0, first_tap)),
                row_tap.eq(first_tap),
            ]
            with m.If(eof):
                set_kind([1, 0, 0, 0])
            with m.Else():
                set_kind(after_position(single_col, single_row))
        with m.Elif(transfer):
            with m.If(last_beat):
                m.d.sync += busy.eq(0)
            with m.If(next_group):
                at_end = group == self.groups - 2
                m.d.sync += group.eq(group + 1)
                with m.If(at_end):
                    set_kind([x_at_end & y_at_end, 0, ~x_at_end, x_at_end & ~y_at_end])
            with m.If(next_column):
                column_at_end = x == x_stop
                m.d.sync += [
                    group.eq(0),
                    x.eq(x - 1),
                    x_at_end.eq(column_at_end),
                    tap.eq(tap + 1),
                ]
                set_kind(after_position(column_at_end, y_at_end))
            with m.If(next_row):
                row_at_end = y == y_stop
                m.d.sync += [
                    group.eq(0),
                    x.eq(x_first),
                    x_at_end.eq(single_column),
                    y.eq(y - 1),
                    y_at_end.eq(row_at_end),
                    tap.eq(row_tap + k),
                    row_tap.eq(row_tap + k),
                ]
                set_kind(after_position(single_column, row_at_end))
        return m
