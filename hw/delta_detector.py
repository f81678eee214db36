"""Delta detector: pixels in, change events out, against a reference frame kept in block RAM.

SPEC step 1, :func:`eventconv.model.detect_events`: for every sample ``d = x - r``; in event mode
the sample emits ``(c, y, x, d)`` and sets ``r = x`` iff ``|d| > threshold``, in dense mode every
sample emits and sets ``r = x``.
"""

import numbers

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import MAX_CHANNELS, MAX_FRAME_SIDE, PIXELS_PER_CYCLE
from .layouts import DELTA_SHAPE, EventStream, PixelStream

__all__ = ["DeltaDetector"]


def _integer(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")


class DeltaDetector(wiring.Component):
    """Compares each input sample with the reference frame and emits the changes as events.

    The reference frame (uint8, ``channels x height x width``, reset to 0) is one
    :class:`~amaranth.lib.memory.Memory` of ``channels * height * width / pixels_per_cycle``
    words, each holding the ``pixels_per_cycle`` samples of one input beat. Every beat costs one
    synchronous read (when it is accepted) and one write, with one enable per sample, of the
    samples that fire (when it moves on to the emit stage). Within a frame every word is read
    and written once, and the next frame reads word 0 long after it was written; the one case
    where a beat needs the word that the beat before it has not yet written (a one-beat frame,
    or ``first`` right after ``first``) holds the input for a cycle.

    Events of a frame come in raster order (y, then x, then channel), one per cycle; a beat with
    several events holds the input until its events are out. After the frame's ``last`` beat
    comes one ``end_of_frame`` beat (other fields 0), also for a frame without events.

    Frame position: the detector counts samples itself. ``last`` ends a frame (its
    ``end_of_frame`` beat follows) and the next beat is sample 0 of a new frame, ``first`` or
    not. ``first`` puts its beat at sample 0 too, so a frame cut short without ``last`` is
    abandoned: its events are out, but it gets no ``end_of_frame`` beat. A frame longer than
    ``channels * height * width`` samples wraps around to sample 0. A frame with ``last`` early
    is a short frame; the samples it did not reach keep their reference.

    Latency: the first event of a beat (or its ``end_of_frame``) is valid on ``events``
    ``LATENCY`` = 3 cycles after the beat is accepted (read, compare, output register), when the
    stages ahead of it are free.
    Throughput: one beat (``pixels_per_cycle`` samples) per clock while beats have no event,
    across frame boundaries too (the one-beat-frame case above aside); a beat with k events
    occupies the emit stage k cycles (one event per clock), the ``last`` beat one more for the
    ``end_of_frame`` beat. A frame of N samples without events, input always valid and output
    always ready, takes ``N / pixels_per_cycle + LATENCY`` cycles from its first beat accepted to
    its ``end_of_frame`` beat transferred (both cycles included); frames back to back take
    ``N / pixels_per_cycle`` cycles each.

    Reset: after ``rst`` the reference memory is cleared to 0, one word per cycle, for
    ``channels * height * width / pixels_per_cycle`` cycles, with ``pixels.ready`` low meanwhile.

    Parameters
    ----------
    height, width : int
        Frame size, even, 2..4096.
    channels : int
        Samples per pixel (Cin), 1..1024.
    pixels_per_cycle : int
        Samples per input beat, one of 1, 2, 4, 8, dividing ``width * channels`` (so a beat never
        spans two rows).

    Members
    -------
    pixels : ``In(PixelStream(pixels_per_cycle))``
        Samples in raster order, the channels of a pixel adjacent, ``first``/``last`` flags.
        ``ready`` looks at the offered beat's ``first`` flag (for the same-word case above).
    events : ``Out(EventStream(channels, height, width))``
        Events ``(channel, y, x, delta)``, then one ``end_of_frame`` beat per frame.
    threshold : ``In(8)``
        T: event mode emits when ``|d| > T``. Sampled per beat; change it between frames.
    dense : ``In(1)``
        Dense mode: every sample emits (``d`` may be 0). Sampled per beat, like ``threshold``.

    Raises
    ------
    TypeError
        A parameter is not an integer.
    ValueError
        A parameter is out of range, a frame side is odd, or ``pixels_per_cycle`` does not divide
        ``width * channels``.
    """

    LATENCY = 3

    def __init__(self, *, height, width, channels, pixels_per_cycle=1):
        for name, value in (("height", height), ("width", width)):
            _integer(name, value, 2, MAX_FRAME_SIDE)
            if value % 2:
                raise ValueError(f"{name} must be even (2 x 2 pooling) and in "
                                 f"2..{MAX_FRAME_SIDE}, not {value}")
        _integer("channels", channels, 1, MAX_CHANNELS)
        if isinstance(pixels_per_cycle, bool) or pixels_per_cycle not in PIXELS_PER_CYCLE:
            raise ValueError(f"pixels_per_cycle must be one of 1, 2, 4, 8, "
                             f"not {pixels_per_cycle!r}")
        if (width * channels) % pixels_per_cycle:
            raise ValueError(f"pixels_per_cycle must divide width * channels = "
                             f"{width * channels}, not {pixels_per_cycle}")
        self._height, self._width, self._channels = height, width, channels
        self._lanes = int(pixels_per_cycle)
        self.depth = channels * height * width // self._lanes
        super().__init__({
            "pixels": In(PixelStream(self._lanes)),
            "events": Out(EventStream(channels, height, width)),
            "threshold": In(8),
            "dense": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, depth = self._lanes, self.depth
        height, width, channels = self._height, self._width, self._channels

        word = data.ArrayLayout(unsigned(8), lanes)
        m.submodules.reference = reference = Memory(shape=word, depth=depth, init=[])
        # One write enable per sample: a sample that does not fire keeps its reference, no
        # multiplexer needed.
        write = reference.write_port(granularity=1)
        read = reference.read_port()

        def split(m, channel, offset, name):
            """(channel + offset) as (whole pixels to advance, channel within the pixel)."""
            total = Signal(range(channels + lanes + 1), name=f"{name}_total")
            carry = Signal(range((channels - 1 + lanes) // channels + 1), name=f"{name}_carry")
            within = Signal(range(channels), name=f"{name}_channel")
            m.d.comb += [total.eq(channel + offset), carry.eq(0), within.eq(total)]
            # Compares with constants, not a divider: offset < channels + lanes.
            for n in range(1, (channels - 1 + lanes) // channels + 1):
                with m.If(total >= n * channels):
                    m.d.comb += [carry.eq(n), within.eq(total - n * channels)]
            return carry, within

        # Clear sequence: ``clearing`` resets to 1, so every ``rst`` clears the reference again.
        # It writes stage 1's samples, which reset to 0, and counts with stage 1's address.
        clearing = Signal(init=1)

        # Stage 0, input: the position of the next beat (word address and its first sample).
        next_address = Signal(range(depth))
        next_channel = Signal(range(channels))
        next_x = Signal(range(width))
        next_y = Signal(range(height))

        # Stage 1: the beat's samples while its reference word comes out of the read port.
        s1_valid = Signal()
        s1_samples = Signal(word)
        s1_last = Signal()
        s1_address = Signal(range(depth))
        s1_channel = Signal(range(channels))
        s1_x = Signal(range(width))
        s1_y = Signal(range(height))

        # Stage 2: deltas and which samples still have to emit their event.
        s2_valid = Signal()
        s2_delta = Signal(data.ArrayLayout(DELTA_SHAPE, lanes))
        s2_pending = Signal(lanes)
        s2_end = Signal()
        s2_channel = Signal(range(channels))
        s2_x = Signal(range(width))
        s2_y = Signal(range(height))

        # Stage 2 -> output register, one item per cycle: the lowest pending lane, else the end.
        output_free = ~self.events.valid | self.events.ready
        lane = Signal(range(lanes))
        for j in reversed(range(lanes)):
            with m.If(s2_pending[j]):
                m.d.comb += lane.eq(j)
        lane_bit = Signal(lanes)
        m.d.comb += lane_bit.eq(Mux(s2_pending.any(), 1 << lane, 0))
        emit_event = s2_valid & s2_pending.any() & output_free
        emit_end = s2_valid & ~s2_pending.any() & s2_end & output_free
        pending_after = Mux(emit_event, s2_pending & ~lane_bit, s2_pending)
        end_after = s2_end & ~emit_end
        s2_free = ~s2_valid | ~(pending_after.any() | end_after)

        event_carry, event_channel = split(m, s2_channel, lane, "event")
        with m.If(output_free):
            m.d.sync += self.events.valid.eq(emit_event | emit_end)
            # An end-of-frame beat (or an empty cycle) carries zeros in every other field.
            payload = self.events.payload
            m.d.sync += [
                payload.channel.eq(Mux(emit_event, event_channel, 0)),
                payload.y.eq(Mux(emit_event, s2_y, 0)),
                payload.x.eq(Mux(emit_event, s2_x + event_carry, 0)),
                payload.delta.eq(Mux(emit_event, s2_delta[lane], 0)),
                payload.end_of_frame.eq(emit_end),
            ]
        with m.If(s2_valid):
            m.d.sync += [s2_pending.eq(pending_after), s2_end.eq(end_after)]

        # Stage 1 -> stage 2: compare, write the samples that fire into the reference.
        advance = s1_valid & s2_free
        fire = Signal(lanes)
        # |d| > T as two comparisons of d itself: -T is shared, no absolute value per lane.
        negative_threshold = Signal(DELTA_SHAPE)
        m.d.comb += negative_threshold.eq(-self.threshold)
        for j in range(lanes):
            delta = Signal(DELTA_SHAPE, name=f"delta{j}")
            m.d.comb += [
                delta.eq(s1_samples[j] - read.data[j]),
                fire[j].eq(self.dense | (delta > self.threshold) | (delta < negative_threshold)),
            ]
            with m.If(advance):
                m.d.sync += s2_delta[j].eq(delta)
        with m.If(advance):
            m.d.sync += [s2_pending.eq(fire), s2_end.eq(s1_last), s2_channel.eq(s1_channel),
                         s2_x.eq(s1_x), s2_y.eq(s1_y)]
        with m.If(s2_free):
            m.d.sync += s2_valid.eq(s1_valid)
        m.d.comb += [write.addr.eq(s1_address), write.data.eq(s1_samples),
                     write.en.eq(Mux(clearing, (1 << lanes) - 1, Mux(advance, fire, 0)))]
        with m.If(clearing):
            with m.If(s1_address == depth - 1):
                m.d.sync += [clearing.eq(0), s1_address.eq(0)]
            with m.Else():
                m.d.sync += s1_address.eq(s1_address + 1)

        # Stage 0 -> stage 1: accept a beat, read its reference word, count its position.
        beat = self.pixels.payload
        address = Mux(beat.first, 0, next_address)
        channel = Mux(beat.first, 0, next_channel)
        x = Mux(beat.first, 0, next_x)
        y = Mux(beat.first, 0, next_y)
        # Stage 1 writes its word only as it moves on, so a beat for that same word (a one-beat
        # frame, or `first` right after `first`) waits a cycle to read it back, rather than
        # paying for a transparent read port.
        s1_free = ~s1_valid | s2_free
        same_word = s1_valid & (s1_address == address)
        m.d.comb += self.pixels.ready.eq(s1_free & ~same_word & ~clearing)
        accept = self.pixels.valid & self.pixels.ready
        m.d.comb += [read.addr.eq(address), read.en.eq(accept)]
        with m.If(s1_free):
            m.d.sync += s1_valid.eq(accept)
        with m.If(accept):
            m.d.sync += [s1_samples.eq(beat.data), s1_last.eq(beat.last), s1_address.eq(address),
                         s1_channel.eq(channel), s1_x.eq(x), s1_y.eq(y)]
            carry, within = split(m, channel, lanes, "next")
            # A beat never spans rows (lanes divide width * channels), so carry lands at width
            # exactly when the row is done; the last word wraps to 0 with everything else.
            with m.If(beat.last):
                m.d.sync += [next_address.eq(0), next_channel.eq(0), next_x.eq(0), next_y.eq(0)]
            with m.Else():
                m.d.sync += [next_address.eq(Mux(address == depth - 1, 0, address + 1)),
                             next_channel.eq(within)]
                with m.If(x + carry >= width):
                    m.d.sync += [next_x.eq(0), next_y.eq(Mux(y == height - 1, 0, y + 1))]
                with m.Else():
                    m.d.sync += [next_x.eq(x + carry), next_y.eq(y)]
        return m
