"""The accumulator unit's ``touched`` output: deduplicated windows behind a skid register."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from eventconv.hw.layouts import WindowStream, window_layout

__all__ = ["TouchedOutput"]


class TouchedOutput(wiring.Component):
    """Gives the write stage's window on ``touched`` unless it is the last one given this frame.

    The unit's write stage holds a beat's window (``write_*``), its mult stage the next beat's
    (``next_*``); both move on ``advance``. Whether the next beat repeats the window last given
    is decided while it is in the mult stage (two compares side by side, picked by whether the
    write stage's window is given), so no comparator feeds ``advance``. An ``end_of_frame``
    beat is always given, and the frame after it starts with no window given.

    ``touched`` has a skid register, so ``advance`` depends on registers only (not on
    ``touched.ready``): the pipeline stalls only when a new window meets a consumer that has not
    taken the two before it.

    Latency: a window in the write stage in cycle t, with ``advance`` high, is valid on
    ``touched`` from t+1 (from the skid register once the consumer takes the one before).
    Throughput: one window per cycle.

    Parameters
    ----------
    height, width : int
        Frame size H, W.

    Members
    -------
    write_valid, write_eof : In(1)
        The write stage holds a beat; it is an ``end_of_frame`` beat.
    write_window : In(window_layout(H, W))
        Its window.
    next_eof : In(1), next_window : In(window_layout(H, W))
        The mult stage's beat (its validity does not matter: an empty stage gives nothing).
    advance : Out(1)
        The pipeline may move: the write stage's window needs no giving, or the skid register
        is free.
    touched : Out(WindowStream(H, W))
        The windows, then each frame's ``end_of_frame``.
    """

    def __init__(self, *, height, width):
        window = window_layout(height, width)
        self._window = window
        super().__init__({
            "write_valid": In(1),
            "write_eof": In(1),
            "write_window": In(window),
            "next_eof": In(1),
            "next_window": In(window),
            "advance": Out(1),
            "touched": Out(WindowStream(height, width)),
        })

    def elaborate(self, platform):
        m = Module()
        last_window = Signal(self._window)
        last_window_valid = Signal()
        write_same = Signal()
        skid_valid = Signal()
        skid = Signal(self._window)
        emit = self.write_valid & ~write_same
        m.d.comb += self.advance.eq(~emit | ~skid_valid)

        with m.If(self.advance):
            # The window the write stage compares against after this edge.
            # Both compares side by side, then ``emit`` picks one (not a window multiplexer
            # in front of one compare).
            same_as_write = ~self.write_eof & (self.next_window.as_value() ==
                                               self.write_window.as_value())
            same_as_last = last_window_valid & (self.next_window.as_value() ==
                                                last_window.as_value())
            m.d.sync += write_same.eq(~self.next_eof & Mux(emit, same_as_write, same_as_last))
            with m.If(emit):
                m.d.sync += [
                    last_window.eq(self.write_window),
                    last_window_valid.eq(~self.write_eof),
                ]

        push = self.advance & emit
        with m.If(~self.touched.valid | self.touched.ready):
            with m.If(skid_valid):
                m.d.sync += [self.touched.payload.eq(skid), skid_valid.eq(0)]
            with m.Elif(push):
                m.d.sync += self.touched.payload.eq(self.write_window)
            m.d.sync += self.touched.valid.eq(skid_valid | push)
        with m.Elif(push):
            m.d.sync += [skid.eq(self.write_window), skid_valid.eq(1)]
        return m
