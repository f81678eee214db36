"""Fan-out: one input event becomes the accumulate ops of the kernel taps that land in the frame.

SPEC step 2: an event ``(c, y, x, d)`` adds ``d * w[o][c][ky][kx]`` to the accumulator at
``(o, y - ky + K//2, x - kx + K//2)`` for every output channel o and every tap whose output
position lies inside the frame.
"""

from types import SimpleNamespace

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
        load = Signal()     # the walk takes the decoded event in this cycle
        decoded = self._decode(m, load)
        walk = self._walk_state(m)
        self._walk(m, walk, decoded, load)
        m.d.comb += [
            load.eq(decoded["valid"] & (~walk.busy | (self.updates.ready & walk.last_beat))),
            self.events.ready.eq(~decoded["valid"] | load),
        ]
        return m

    def _decode(self, m, load):
        """The decode stage: the in-frame ranges of the next event (output rows y+pad down to
        y-pad, clipped to the frame) computed into registers while the walk runs, so no range
        arithmetic sits in front of the walk's registers. Holds an event until ``load``.
        Returns the dict of its registers (``valid``: an event is decoded)."""
        h, w, k = self._height, self._width, self._kernel_size
        pad = k // 2
        event, update = self.events.payload, self.updates.payload
        decoded = {
            "valid": Signal(name="decoded"),
            "eof": Signal(name="decoded_eof"),
            "channel": Signal.like(update.channel, name="decoded_channel"),
            "delta": Signal(DELTA_SHAPE, name="decoded_delta"),
            "first_y": Signal.like(update.y, name="first_y"),
            "first_x": Signal.like(update.x, name="first_x"),
            "last_y": Signal.like(update.y, name="last_y"),
            "last_x": Signal.like(update.x, name="last_x"),
            "first_tap": Signal.like(update.tap, name="first_tap"),
            "single_row": Signal(name="single_row"),
            "single_col": Signal(name="single_col"),
        }
        with m.If(self.events.valid & self.events.ready):
            # Taps cut by the bottom/right border: max(0, y + pad - (h - 1)).
            cut_y = Mux(event.y > h - 1 - pad, event.y - (h - 1 - pad), 0)
            cut_x = Mux(event.x > w - 1 - pad, event.x - (w - 1 - pad), 0)
            top_y = Mux(event.y > h - 1 - pad, h - 1, event.y + pad)
            top_x = Mux(event.x > w - 1 - pad, w - 1, event.x + pad)
            bottom_y = Mux(event.y >= pad, event.y - pad, 0)
            bottom_x = Mux(event.x >= pad, event.x - pad, 0)
            m.d.sync += [
                decoded["eof"].eq(event.end_of_frame),
                decoded["channel"].eq(Mux(event.end_of_frame, 0, event.channel)),
                decoded["delta"].eq(Mux(event.end_of_frame, 0, event.delta)),
                decoded["first_y"].eq(top_y),
                decoded["first_x"].eq(top_x),
                decoded["last_y"].eq(bottom_y),
                decoded["last_x"].eq(bottom_x),
                decoded["first_tap"].eq(times(cut_y, k) + cut_x),
                decoded["single_row"].eq(top_y == bottom_y),
                decoded["single_col"].eq(top_x == bottom_x),
            ]
        with m.If(self.events.valid & self.events.ready):
            m.d.sync += decoded["valid"].eq(1)
        with m.Elif(load):
            m.d.sync += decoded["valid"].eq(0)
        return decoded

    def _walk_state(self, m):
        """The walk's registers, driving ``updates``. It runs over output positions (descending
        as the tap index ascends) so that the beat's y and x are registers, not adders on the
        output path. Returns them as a namespace."""
        h, w = self._height, self._width
        update = self.updates.payload
        walk = SimpleNamespace(
            busy=Signal(name="busy"),
            y=Signal.like(update.y, name="y"),
            x=Signal.like(update.x, name="x"),
            x_first=Signal.like(update.x, name="x_first"),
            x_last=Signal.like(update.x, name="x_last"),
            y_last=Signal.like(update.y, name="y_last"),
            tap=Signal.like(update.tap, name="tap"),
            row_tap=Signal.like(update.tap, name="row_tap"),
            group=Signal.like(update.group, name="group"),
            channel=Signal.like(update.channel, name="channel"),
            delta=Signal(DELTA_SHAPE, name="delta"),
            end_of_frame=Signal(name="end_of_frame"),
            # x and y count down to x_last and y_last; "at end" compares against the value
            # after the step (x_last + 1 kept as a register).
            x_stop=Signal(range(w + 1), name="x_stop"),
            y_stop=Signal(range(h + 1), name="y_stop"),
            single_column=Signal(name="single_column"),
            x_at_end=Signal(name="x_at_end"),
            y_at_end=Signal(name="y_at_end"),
            # What the next transfer does, one-hot, kept as a register and worked out when the
            # walk state changes: so the consumer's ready meets only this register on its way
            # to the load enables (no comparator or flag logic in between).
            last_beat=Signal(name="last_beat"),
            next_group=Signal(name="next_group"),
            next_column=Signal(name="next_column"),
            next_row=Signal(name="next_row"),
        )
        m.d.comb += [
            self.updates.valid.eq(walk.busy),
            update.y.eq(walk.y),
            update.x.eq(walk.x),
            update.group.eq(walk.group),
            update.channel.eq(walk.channel),
            update.tap.eq(walk.tap),
            update.delta.eq(walk.delta),
            update.end_of_frame.eq(walk.end_of_frame),
        ]
        return walk

    def _after_position(self, column_at_end, row_at_end):
        """Step kinds (last beat, next group, next column, next row) once the groups of a
        position are done."""
        if self.groups != 1:
            return [0, 1, 0, 0]
        return [column_at_end & row_at_end, 0, ~column_at_end, column_at_end & ~row_at_end]

    @staticmethod
    def _set_kind(m, walk, kinds):
        m.d.sync += [flag.eq(value) for flag, value in
                     zip((walk.last_beat, walk.next_group, walk.next_column, walk.next_row),
                         kinds, strict=True)]

    def _walk(self, m, walk, decoded, load):
        """The walk: loads the decoded event on ``load``, else steps on each transfer: the next
        group, else the next column (x - 1), else the next row (y - 1)."""
        k = self._kernel_size
        with m.If(load):
            eof = decoded["eof"]
            m.d.sync += [
                walk.busy.eq(1),
                walk.end_of_frame.eq(eof),
                walk.group.eq(0),
                walk.x_at_end.eq(decoded["single_col"]),
                walk.y_at_end.eq(decoded["single_row"]),
                walk.channel.eq(decoded["channel"]),
                walk.delta.eq(decoded["delta"]),
                walk.y.eq(Mux(eof, 0, decoded["first_y"])),
                walk.x.eq(Mux(eof, 0, decoded["first_x"])),
                walk.x_first.eq(decoded["first_x"]),
                walk.y_last.eq(decoded["last_y"]),
                walk.x_last.eq(decoded["last_x"]),
                walk.x_stop.eq(decoded["last_x"] + 1),
                walk.y_stop.eq(decoded["last_y"] + 1),
                walk.single_column.eq(decoded["single_col"]),
                walk.tap.eq(Mux(eof, 0, decoded["first_tap"])),
                walk.row_tap.eq(decoded["first_tap"]),
            ]
            with m.If(eof):
                self._set_kind(m, walk, [1, 0, 0, 0])
            with m.Else():
                self._set_kind(m, walk, self._after_position(decoded["single_col"],
                                                             decoded["single_row"]))
        with m.Elif(self.updates.valid & self.updates.ready):
            with m.If(walk.last_beat):
                m.d.sync += walk.busy.eq(0)
            with m.If(walk.next_group):
                at_end = walk.group == self.groups - 2
                m.d.sync += walk.group.eq(walk.group + 1)
                with m.If(at_end):
                    self._set_kind(m, walk, [walk.x_at_end & walk.y_at_end, 0, ~walk.x_at_end,
                                             walk.x_at_end & ~walk.y_at_end])
            with m.If(walk.next_column):
                column_at_end = walk.x == walk.x_stop
                m.d.sync += [
                    walk.group.eq(0),
                    walk.x.eq(walk.x - 1),
                    walk.x_at_end.eq(column_at_end),
                    walk.tap.eq(walk.tap + 1),
                ]
                self._set_kind(m, walk, self._after_position(column_at_end, walk.y_at_end))
            with m.If(walk.next_row):
                row_at_end = walk.y == walk.y_stop
                m.d.sync += [
                    walk.group.eq(0),
                    walk.x.eq(walk.x_first),
                    walk.x_at_end.eq(walk.single_column),
                    walk.y.eq(walk.y - 1),
                    walk.y_at_end.eq(row_at_end),
                    walk.tap.eq(walk.row_tap + k),
                    walk.row_tap.eq(walk.row_tap + k),
                ]
                self._set_kind(m, walk, self._after_position(walk.single_column, row_at_end))
