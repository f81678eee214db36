"""Delta detector: pixels in, change events out, against a reference frame kept in block RAM.

SPEC step 1, :func:`eventconv.core.model.detect_events`: for every sample ``d = x - r``; in event
mode the sample emits ``(c, y, x, d)`` and sets ``r = x`` iff ``|d| > threshold``, in dense mode
every sample emits and sets ``r = x``.
"""

from types import SimpleNamespace

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from eventconv.core import ranges
from eventconv.hw.layouts import DELTA_SHAPE, EventStream, PixelStream
from eventconv.hw.primitives.block_ram import NO_RW_CHECK, UncheckedReadPort, register_stage
from eventconv.hw.primitives.stream_register import StreamRegister
from eventconv.hw.target import GENERIC, checked_target

__all__ = ["DeltaDetector"]

# Beats the queue between the compare and the emit stage holds: the two stages ahead of it,
# one more so that beats without events flow at one per clock, and one for the cycle a credit
# takes to come back (the accept logic counts a beat that left a cycle late). One more with
# ``target.ram_read_register`` (three stages ahead of it).
QUEUE_DEPTH = 4


class DeltaDetector(wiring.Component):
    """Compares each input sample with the reference frame and emits the changes as events.

    The reference frame (uint8, ``channels x height x width``, reset to 0) is one
    :class:`~amaranth.lib.memory.Memory` of ``channels * height * width / pixels_per_cycle``
    words, each holding the ``pixels_per_cycle`` samples of one input beat. Every beat costs one
    synchronous read (when it is accepted) and one write, with one enable per sample, of the
    samples that fire (as it leaves the compare stage, two cycles later). Within a frame
    every word is read and written once, and the next frame reads word 0 long after it was
    written; a beat that needs a word one of the two beats ahead of it has not yet written (a
    frame of one or two beats, or ``first`` soon after ``first``) waits until it is written.

    Events of a frame come in raster order (y, then x, then channel), one per cycle; a beat with
    several events holds the emit stage until its events are out, and the input once the queue
    in front of it is full. After the frame's ``last`` beat
    comes one ``end_of_frame`` beat (other fields 0), also for a frame without events.

    Frame position: the detector counts samples itself. ``last`` ends a frame (its
    ``end_of_frame`` beat follows) and the next beat is sample 0 of a new frame, ``first`` or
    not. ``first`` puts its beat at sample 0 too, so a frame cut short without ``last`` is
    abandoned: its events are out, but it gets no ``end_of_frame`` beat. A frame longer than
    ``channels * height * width`` samples wraps around to sample 0. A frame with ``last`` early
    is a short frame; the samples it did not reach keep their reference.

    Pipeline, for timing (no path from the read data to a subtraction, nor from either to
    ``pixels.ready``): input register; read (the sample minus and plus T worked out beside it);
    subtract and compare (``|d| > T`` as the reference below ``x - T`` or above ``x + T``); write
    back; emit; output register. The input register is a
    :class:`~eventconv.hw.primitives.stream_register.StreamRegister`: ``pixels.ready`` comes from
    its flip-flops, and the accept logic looks at a beat held in flip-flops, not at the input port.
    The read and compare stages never stall: a beat is accepted only when a ``QUEUE_DEPTH``-entry
    queue in front of the emit stage has room for it and the beats ahead of it, so no ready chain
    runs from the emit stage back to the input. The output register has a skid register behind it,
    so ``events.ready`` only reaches register enables. ``threshold`` and ``dense`` are registered,
    and sampled the cycle before a beat is accepted.

    When the target wants RAM read registers (``target.ram_read_register``) the reference word goes
    from the block RAM into flip-flops and nothing else, and the subtract and compare work from
    those a cycle later (an ECP5 DP16KD alone takes 5.8 ns from clock to output in nextpnr's model):
    one more stage holds a word not yet written, so frames of up to three beats wait as above, the
    queue has one more entry, and ``LATENCY`` is 6.

    Latency: the first event of a beat (or its ``end_of_frame``) is valid on ``events``
    ``LATENCY`` = 5 cycles after the beat is accepted (input register, read, subtract and
    compare, emit, output register), when the queue and the skid registers are empty.
    Throughput: one beat (``pixels_per_cycle`` samples) per clock while beats have no event,
    across frame boundaries too (the frames of one or two beats above aside); a beat with k events
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
    target : :class:`~eventconv.hw.target.Target`
        ``ram_read_register``: register the reference word as it leaves the block RAM (a stage
        more, see above).

    Members
    -------
    pixels : ``In(PixelStream(pixels_per_cycle))``
        Samples in raster order, the channels of a pixel adjacent, ``first``/``last`` flags.
        ``ready`` comes from registers: low during the clear sequence and while the input
        register's skid register holds a beat, never looking at the offered beat.
    events : ``Out(EventStream(channels, height, width))``
        Events ``(channel, y, x, delta)``, then one ``end_of_frame`` beat per frame.
    threshold : ``In(8)``
        T: event mode emits when ``|d| > T``. Sampled per beat; change it between frames.
    dense : ``In(1)``
        Dense mode: every sample emits (``d`` may be 0). Sampled per beat, like ``threshold``.

    Raises
    ------
    TypeError
        A parameter is not an integer (``target``: not a Target).
    ValueError
        A parameter is out of range, a frame side is odd, or ``pixels_per_cycle`` does not divide
        ``width * channels``.
    """

    LATENCY = 5

    def __init__(self, *, height, width, channels, pixels_per_cycle=1, target=GENERIC):
        height = ranges.frame_side("height", height)
        width = ranges.frame_side("width", width)
        channels = ranges.integer("channels", channels, 1, ranges.MAX_CHANNELS)
        pixels_per_cycle = ranges.pixels_per_cycle("pixels_per_cycle", pixels_per_cycle,
                                                   width * channels, "width * channels")
        self.target = checked_target(target)
        self._height, self._width, self._channels = height, width, channels
        registered = target.ram_read_register
        self.LATENCY = type(self).LATENCY + registered
        self.queue_depth = QUEUE_DEPTH + registered
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
        # The stages share their signals through ``w``; each part adds to ``m`` in turn, in
        # the order the signals and statements were always made in.
        w = SimpleNamespace()
        self._reference_and_input(m, w)
        self._stage_1_signals(m, w)
        self._stage_2_3_signals(m, w)
        self._emit(m, w)
        self._compare_and_queue(m, w)
        self._stage_2(m, w)
        self._accept(m, w)
        self._hazards_and_credits(m, w)
        self._stage_1(m, w)
        return m

    def _split(self, m, channel, offset, name):
        """(channel + offset) as (whole pixels to advance, channel within the pixel)."""
        lanes, channels = self._lanes, self._channels
        total = Signal(range(channels + lanes + 1), name=f"{name}_total")
        carry = Signal(range((channels - 1 + lanes) // channels + 1), name=f"{name}_carry")
        within = Signal(range(channels), name=f"{name}_channel")
        m.d.comb += [total.eq(channel + offset), carry.eq(0), within.eq(total)]
        # Compares with constants, not a divider: offset < channels + lanes.
        for n in range(1, (channels - 1 + lanes) // channels + 1):
            with m.If(total >= n * channels):
                m.d.comb += [carry.eq(n), within.eq(total - n * channels)]
        return carry, within

    def _step(self, m, address, channel, x, y, name):
        """The position of the beat after one at (address, channel, x, y)."""
        lanes, depth = self._lanes, self.depth
        height, width, channels = self._height, self._width, self._channels
        carry, within = self._split(m, channel, lanes, name)
        after = (Signal(range(depth), name=f"{name}_address"),
                 Signal(range(channels), name=f"{name}_channel"),
                 Signal(range(width), name=f"{name}_x"),
                 Signal(range(height), name=f"{name}_y"))
        m.d.comb += [after[0].eq(Mux(address == depth - 1, 0, address + 1)),
                     after[1].eq(within)]
        # A beat never spans rows (lanes divide width * channels), so carry lands at width
        # exactly when the row is done; the last word wraps to 0 with everything else.
        # Compares of x with constants, one per carry value, rather than an adder then a
        # compare.
        row_done = Signal(name=f"{name}_row_done")
        m.d.comb += row_done.eq(0)
        for n in range(1, (channels - 1 + lanes) // channels + 1):
            with m.If((carry == n) & (x >= width - n)):
                m.d.comb += row_done.eq(1)
        with m.If(row_done):
            m.d.comb += [after[2].eq(0), after[3].eq(Mux(y == height - 1, 0, y + 1))]
        with m.Else():
            m.d.comb += [after[2].eq(x + carry), after[3].eq(y)]
        return after

    def _reference_and_input(self, m, w):
        """Build the reference memory and its ports, the clear flag and the stage 0 input."""
        lanes, depth = self._lanes, self.depth
        word = data.ArrayLayout(unsigned(8), lanes)
        m.submodules.reference = reference = Memory(shape=word, depth=depth, init=[],
                                                    attrs=NO_RW_CHECK)
        # One write enable per sample: a sample that does not fire keeps its reference, no
        # multiplexer needed.
        write = reference.write_port(granularity=1)
        # A beat is never accepted (its word read) while stage 1 or 2 holds its word, so a
        # read never meets the write of its address: no read-during-write logic after the RAM.
        read = UncheckedReadPort(m, reference, name="reference_read")

        # Clear sequence: ``clearing`` resets to 1, so every ``rst`` clears the reference again.
        # It writes zeros and counts with stage 2's address.
        clearing = Signal(init=1)

        # Stage 0, input: the position of the next beat (word address and its first sample), and
        # a register slice so that ``pixels.ready`` is a register, not the end of the stall
        # chain, and the beat the stall logic looks at comes from flip-flops.
        m.submodules.input_register = input_register = StreamRegister(
            self.pixels.payload.shape())
        next_address = Signal(range(depth))
        next_zero = Signal(init=1)  # next_address == 0
        w.word, w.write, w.read, w.clearing = word, write, read, clearing
        w.input_register, w.next_address, w.next_zero = input_register, next_address, next_zero

    def _stage_1_signals(self, m, w):
        """Build the stage 1 registers and, with ``ram_read_register``, stage R."""
        lanes, depth = self._lanes, self.depth
        height, width, channels = self._height, self._width, self._channels
        word, read = w.word, w.read
        # Stage 1: the beat's samples while its reference word comes out of the read port.
        s1_valid = Signal()
        s1_samples = Signal(word)
        s1_last = Signal()
        s1_address = Signal(range(depth))
        s1_first = Signal()
        s1_zero = Signal()  # s1_address == 0
        # The beat's position (channel, x, y) is worked out in stage 1, off the accept logic:
        # ``position`` is the one after the last beat that left stage 1.
        position = (Signal(range(channels), name="position_channel"),
                    Signal(range(width), name="position_x"),
                    Signal(range(height), name="position_y"))
        s1_channel, s1_x, s1_y = (Mux(s1_first, 0, value) for value in position)
        s1_one = Signal()  # s1_address == 1
        # The samples minus and plus T: |x - r| > T is r < x - T or r > x + T, two compares
        # of the read data with registers, no subtraction in front of them.
        bound_shape = signed(10)
        s1_low = Signal(data.ArrayLayout(bound_shape, lanes))
        s1_high = Signal(data.ArrayLayout(bound_shape, lanes))
        s1_dense = Signal()

        # Stage R, with ``target.ram_read_register`` only: stage 1's beat a cycle on, its reference
        # word registered as it leaves the block RAM. ``fed`` is what stage 2 works from.
        fed = {"valid": s1_valid, "reference": read.data, "samples": s1_samples,
               "low": s1_low, "high": s1_high, "dense": s1_dense, "last": s1_last,
               "address": s1_address, "zero": s1_zero, "one": s1_one,
               "channel": s1_channel, "x": s1_x, "y": s1_y}
        s1_two = r_two = None
        if self.target.ram_read_register:
            fed = register_stage(m, fed, "r", reset_less=("reference",))
            s1_two = Signal()  # s1_address == 2
            r_two = Signal()
            m.d.sync += r_two.eq(s1_two)
        w.s1_valid, w.s1_samples, w.s1_last = s1_valid, s1_samples, s1_last
        w.s1_address, w.s1_first, w.s1_zero, w.s1_one = s1_address, s1_first, s1_zero, s1_one
        w.position, w.s1_channel, w.s1_x, w.s1_y = position, s1_channel, s1_x, s1_y
        w.s1_low, w.s1_high, w.s1_dense = s1_low, s1_high, s1_dense
        w.fed, w.s1_two, w.r_two = fed, s1_two, r_two

    def _stage_2_3_signals(self, m, w):
        """Build the stage 2 (compare) and stage 3 (emit) registers."""
        lanes, depth = self._lanes, self.depth
        height, width, channels = self._height, self._width, self._channels
        # Stage 2: deltas, registered straight after the subtraction (the read data comes late).
        s2_valid = Signal()
        s2_delta = Signal(data.ArrayLayout(DELTA_SHAPE, lanes))
        s2_samples = Signal(w.word)
        s2_last = Signal()
        s2_address = Signal(range(depth))
        s2_channel = Signal(range(channels))
        s2_x = Signal(range(width))
        s2_y = Signal(range(height))
        # The two compares, registered apart (each a carry chain straight from the read
        # port), and dense mode: a sample emits if any is set.
        s2_below = Signal(lanes)
        s2_above = Signal(lanes)
        s2_dense = Signal()

        # Stage 3: deltas and which samples still have to emit their event.
        s3_valid = Signal()
        s3_delta = Signal(data.ArrayLayout(DELTA_SHAPE, lanes))
        s3_pending = Signal(lanes)
        s3_end = Signal()
        s3_channel = Signal(range(channels))
        s3_x = Signal(range(width))
        s3_y = Signal(range(height))
        w.s2_valid, w.s2_delta, w.s2_samples, w.s2_last = s2_valid, s2_delta, s2_samples, s2_last
        w.s2_address, w.s2_channel, w.s2_x, w.s2_y = s2_address, s2_channel, s2_x, s2_y
        w.s2_below, w.s2_above, w.s2_dense = s2_below, s2_above, s2_dense
        w.s3_valid, w.s3_delta, w.s3_pending, w.s3_end = s3_valid, s3_delta, s3_pending, s3_end
        w.s3_channel, w.s3_x, w.s3_y = s3_channel, s3_x, s3_y

    def _emit(self, m, w):
        """Build the emit stage (stage 3 -> output register) and the output register."""
        lanes = self._lanes
        s3_valid, s3_delta, s3_pending, s3_end = w.s3_valid, w.s3_delta, w.s3_pending, w.s3_end
        s3_channel, s3_x, s3_y = w.s3_channel, w.s3_x, w.s3_y
        # Stage 3 -> output register, one item per cycle: the lowest pending lane, else the end.
        output_skid_valid = Signal()
        output_skid = Signal(self.events.payload.shape())
        output_free = ~output_skid_valid
        lane = Signal(range(lanes))
        for j in reversed(range(lanes)):
            with m.If(s3_pending[j]):
                m.d.comb += lane.eq(j)
        lane_bit = Signal(lanes)
        m.d.comb += lane_bit.eq(Mux(s3_pending.any(), 1 << lane, 0))
        emit_event = s3_valid & s3_pending.any() & output_free
        emit_end = s3_valid & ~s3_pending.any() & s3_end & output_free
        pending_after = Mux(emit_event, s3_pending & ~lane_bit, s3_pending)
        end_after = s3_end & ~emit_end
        # Free when empty or when its one remaining item leaves now: apart from the output's
        # ready, from registers only (the same as ``~(pending_after.any() | end_after)``).
        single = (s3_pending & (s3_pending - 1)) == 0
        last_item = Mux(s3_pending.any(), single & ~s3_end, s3_end)
        s3_free = ~s3_valid | ~(s3_pending.any() | s3_end) | (output_free & last_item)

        event_carry, event_channel = self._split(m, s3_channel, lane, "event")
        # An end-of-frame beat (or an empty cycle) carries zeros in every other field.
        item = Signal(self.events.payload.shape())
        m.d.comb += [
            item.channel.eq(Mux(emit_event, event_channel, 0)),
            item.y.eq(Mux(emit_event, s3_y, 0)),
            item.x.eq(Mux(emit_event, s3_x + event_carry, 0)),
            item.delta.eq(Mux(emit_event, s3_delta[lane], 0)),
            item.end_of_frame.eq(emit_end),
        ]
        # The output register has a skid register behind it: the emit stage only looks at
        # whether the skid register is empty, so ``events.ready`` ends at register enables.
        with m.If(~self.events.valid | self.events.ready):
            with m.If(output_skid_valid):
                m.d.sync += [self.events.valid.eq(1), self.events.payload.eq(output_skid),
                             output_skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.events.valid.eq(emit_event | emit_end),
                             self.events.payload.eq(item)]
        with m.Elif(emit_event | emit_end):
            m.d.sync += [output_skid_valid.eq(1), output_skid.eq(item)]
        w.pending_after, w.end_after, w.s3_free = pending_after, end_after, s3_free

    def _compare_and_queue(self, m, w):
        """Build the stage 2 write-back, the queue between stages 2 and 3, and stage 3's load."""
        lanes, queue_depth = self._lanes, self.queue_depth
        write, clearing = w.write, w.clearing
        s2_valid, s2_delta, s2_samples, s2_last = w.s2_valid, w.s2_delta, w.s2_samples, w.s2_last
        s2_address, s2_channel, s2_x, s2_y = w.s2_address, w.s2_channel, w.s2_x, w.s2_y
        s2_below, s2_above, s2_dense = w.s2_below, w.s2_above, w.s2_dense
        s3_valid, s3_delta, s3_pending, s3_end = w.s3_valid, w.s3_delta, w.s3_pending, w.s3_end
        s3_channel, s3_x, s3_y, s3_free = w.s3_channel, w.s3_x, w.s3_y, w.s3_free
        # Stage 2: compare, write the samples that fire into the reference. Stages 1 and 2
        # never stall: a beat is accepted only when the queue below has room for it and for
        # every beat ahead of it, so no ready chain runs from the output back to the input.
        fire = Signal(lanes)
        m.d.comb += fire.eq(Mux(s2_dense, (1 << lanes) - 1, s2_below | s2_above))
        m.d.comb += [write.addr.eq(s2_address), write.data.eq(Mux(clearing, 0, s2_samples)),
                     write.en.eq(Mux(clearing, (1 << lanes) - 1, Mux(s2_valid, fire, 0)))]

        # The queue between stage 2 and stage 3: ``queue_depth`` entries, in a ring. A beat from
        # stage 2 goes straight to stage 3 when the queue is empty and stage 3 frees.
        entry = data.StructLayout({"delta": s3_delta.shape(), "pending": lanes, "end": 1,
                                   "channel": s3_channel.shape(), "x": s3_x.shape(),
                                   "y": s3_y.shape()})
        queue = Array(Signal(entry, name=f"queue_{i}") for i in range(queue_depth))
        queue_read = Signal(range(queue_depth))
        queue_write = Signal(range(queue_depth))
        queue_count = Signal(range(queue_depth + 1))
        arriving = Signal(entry)
        m.d.comb += [arriving.delta.eq(s2_delta), arriving.pending.eq(fire),
                     arriving.end.eq(s2_last), arriving.channel.eq(s2_channel),
                     arriving.x.eq(s2_x), arriving.y.eq(s2_y)]
        queued = queue_count != 0
        pop = s3_free & queued
        push = s2_valid & ~(s3_free & ~queued)
        head = Mux(queued, queue[queue_read].as_value(), arriving.as_value())
        head = data.View(entry, head)

        def ring_next(pointer):
            return Mux(pointer == queue_depth - 1, 0, pointer + 1)

        with m.If(push):
            m.d.sync += [queue[queue_write].eq(arriving), queue_write.eq(ring_next(queue_write))]
        with m.If(pop):
            m.d.sync += queue_read.eq(ring_next(queue_read))
        m.d.sync += queue_count.eq(queue_count + push - pop)

        with m.If(s3_free):
            m.d.sync += [s3_valid.eq(queued | s2_valid), s3_pending.eq(head.pending),
                         s3_end.eq(head.end), s3_delta.eq(head.delta),
                         s3_channel.eq(head.channel), s3_x.eq(head.x), s3_y.eq(head.y)]
        with m.Elif(s3_valid):
            m.d.sync += [s3_pending.eq(w.pending_after), s3_end.eq(w.end_after)]
        w.queued = queued

    def _stage_2(self, m, w):
        """Build the clear counter and the stage 1 (or R) -> stage 2 subtraction and compares."""
        lanes, depth, clearing, fed = self._lanes, self.depth, w.clearing, w.fed
        s2_valid, s2_delta, s2_samples, s2_last = w.s2_valid, w.s2_delta, w.s2_samples, w.s2_last
        s2_address, s2_channel, s2_x, s2_y = w.s2_address, w.s2_channel, w.s2_x, w.s2_y
        s2_below, s2_above, s2_dense = w.s2_below, w.s2_above, w.s2_dense
        with m.If(clearing):
            with m.If(s2_address == depth - 1):
                m.d.sync += clearing.eq(0)
            m.d.sync += s2_address.eq(s2_address + 1)
        with m.Else():
            m.d.sync += s2_address.eq(fed["address"])

        # Stage 1 (or R) -> stage 2: subtract the reference word as it comes out of the read
        # port (or its register).
        m.d.sync += s2_valid.eq(fed["valid"])
        for j in range(lanes):
            reference_sample = fed["reference"][j]
            m.d.sync += [s2_delta[j].eq(fed["samples"][j] - reference_sample),
                         # As the signs of differences: carry chains on both families.
                         s2_below[j].eq((reference_sample - fed["low"][j])[-1]),
                         s2_above[j].eq((fed["high"][j] - reference_sample)[-1])]
        m.d.sync += [s2_dense.eq(fed["dense"]), s2_samples.eq(fed["samples"]),
                     s2_last.eq(fed["last"]),
                     s2_channel.eq(fed["channel"]), s2_x.eq(fed["x"]), s2_y.eq(fed["y"])]

    def _accept(self, m, w):
        """Build the accept logic of stage 0 -> stage 1: address, credits, next-state values."""
        depth, queue_depth = self.depth, self.queue_depth
        input_register, clearing = w.input_register, w.clearing
        next_address, next_zero = w.next_address, w.next_zero
        # Stage 0 -> stage 1: accept a beat, read its reference word, count its position. The
        # beat comes from the input register, so the accept logic starts from flip-flops.
        m.d.comb += [
            input_register.i.payload.eq(self.pixels.payload),
            input_register.i.valid.eq(self.pixels.valid & ~clearing),
            self.pixels.ready.eq(input_register.i.ready & ~clearing),
        ]
        beat = input_register.o.payload
        offered = input_register.o.valid
        address = Signal(range(depth))
        m.d.comb += address.eq(Mux(beat.first, 0, next_address))
        # A beat writes its word as it leaves stage 2, so a beat for a word that stage 1 or 2
        # still holds (a frame of one or two beats, or `first` soon after `first`) waits until
        # it is written, rather than paying for a transparent read port or a bypass.
        # From flags kept with the stages, no address comparison here. A beat at word 0 waits
        # while either stage holds word 0. Otherwise it is at ``next_address`` = (stage 1's
        # word) + 1, not 0, which stage 2 can hold only when stage 1 holds word 0 (its beat
        # started a frame or wrapped) and stage 2 word 1.
        # Both flags are registered, worked out from the values the stages get on the edge.
        restart = beat.first | next_zero
        # Room in the queue for this beat and the ones in stages 1 and 2, should stage 3 stay
        # busy: s1_valid + s2_valid + queue_count < queue_depth. Kept as credits: a beat
        # accepted takes one, a beat that leaves for stage 3 (from the queue or straight from
        # stage 2) gives it back a cycle later, from a register, so that the emit stage's
        # state is not on the accept logic's path.
        # Nothing is offered while clearing: the input register takes no beat then.
        credits = Signal(range(queue_depth + 1), init=queue_depth)
        # The accept logic reads two flip-flops and the beat's ``first`` flag, one LUT: whether
        # a beat must wait if it starts a frame, and if it does not. Each folds the hazard flag
        # it would use with the lack of credits: after the edge, "word 0 in flight" (a beat of
        # word 0 in stage 1 or 2) and "the next word in flight" (``restart`` picks the first).
        wait_first = Signal()
        wait_other = Signal()
        accept = Signal()
        m.d.comb += accept.eq(offered & ~Mux(beat.first, wait_first, wait_other))
        released = Signal()
        m.d.sync += released.eq(w.s3_free & (w.queued | w.s2_valid))
        credits_after = Signal.like(credits)
        next_zero_after = Signal()
        zero_after = Signal()
        next_after = Signal()
        m.d.comb += [
            credits_after.eq(credits - accept + released),
            next_zero_after.eq(Mux(accept, beat.last | (~beat.first &
                                                         (next_address == depth - 1)),
                                   next_zero)),
        ]
        w.beat, w.address, w.restart, w.accept = beat, address, restart, accept
        w.released, w.credits, w.credits_after = released, credits, credits_after
        w.wait_first, w.wait_other = wait_first, wait_other
        w.next_zero_after, w.zero_after, w.next_after = next_zero_after, zero_after, next_after

    def _hazards_and_credits(self, m, w):
        """Build the registered wait flags: hazards on words in flight and the credit count."""
        accept, restart, released, fed = w.accept, w.restart, w.released, w.fed
        s1_valid, s1_zero, s1_one, s1_two = w.s1_valid, w.s1_zero, w.s1_one, w.s1_two
        zero_after, next_after, next_zero_after = w.zero_after, w.next_after, w.next_zero_after
        credits, credits_after = w.credits, w.credits_after
        if not self.target.ram_read_register:
            m.d.comb += [
                zero_after.eq((accept & restart) | (s1_valid & s1_zero)),
                next_after.eq(accept & restart & s1_valid & s1_one),
            ]
        else:
            # Stages 1, R and 2 hold words not yet written; after the edge, stage 1 the beat
            # accepted, R and 2 those of 1 and R. A beat at a != 0 (one after the last beat
            # accepted, L, at a - 1) meets an older beat at a only if L or the beat before it
            # restarted at word 0, so a is 1 or 2: a = 1 when a restart is accepted and stage 1
            # or R holds 1, or none is accepted, stage 1 holds 0 and R 1; a = 2 when a beat at
            # 1 is accepted, stage 1 holds 0 and R 2.
            s1_at = [s1_valid & flag for flag in (s1_zero, s1_one, s1_two)]
            r_valid = fed["valid"]
            r_at = [r_valid & flag for flag in (fed["zero"], fed["one"], w.r_two)]
            m.d.comb += [
                zero_after.eq((accept & restart) | s1_at[0] | r_at[0]),
                next_after.eq(Mux(accept, Mux(restart, s1_at[1] | r_at[1], s1_at[0] & r_at[2]),
                                  s1_at[0] & r_at[1])),
            ]
            m.d.sync += s1_two.eq(~restart & (w.next_address == 2))
        # No credit left after this cycle, from flags rather than through the adder.
        credits_zero = Signal()
        credits_one = Signal()
        none_after = Signal()
        m.d.comb += none_after.eq(~released & (credits_zero | (credits_one & accept)))
        m.d.sync += [
            credits.eq(credits_after), w.next_zero.eq(next_zero_after),
            credits_zero.eq(credits_after == 0), credits_one.eq(credits_after == 1),
            w.wait_first.eq(zero_after | none_after),
            w.wait_other.eq(Mux(next_zero_after, zero_after, next_after) | none_after),
        ]

    def _stage_1(self, m, w):
        """Build the stage 0 -> stage 1 transfer: read, knobs, stage 1 loads, next position."""
        lanes, depth = self._lanes, self.depth
        beat, accept, address, restart = w.beat, w.accept, w.address, w.restart
        next_address, position = w.next_address, w.position
        s1_valid, s1_samples, s1_last = w.s1_valid, w.s1_samples, w.s1_last
        s1_address, s1_first, s1_zero, s1_one = w.s1_address, w.s1_first, w.s1_zero, w.s1_one
        s1_low, s1_high, s1_dense = w.s1_low, w.s1_high, w.s1_dense
        m.d.comb += w.input_register.o.ready.eq(accept)
        m.d.comb += [w.read.addr.eq(address), w.read.en.eq(1)]
        # The knobs are registered: sampled the cycle before a beat is accepted.
        threshold = Signal(8)
        dense = Signal()
        m.d.sync += [threshold.eq(self.threshold), dense.eq(self.dense), s1_dense.eq(dense)]
        for j in range(lanes):
            m.d.sync += [s1_low[j].eq(beat.data[j] - threshold),
                         s1_high[j].eq(beat.data[j] + threshold)]
        m.d.sync += [s1_valid.eq(accept),
                     s1_samples.eq(beat.data), s1_last.eq(beat.last), s1_address.eq(address),
                     s1_first.eq(beat.first), s1_zero.eq(restart),
                     s1_one.eq(~restart & (next_address == 1))]
        # The word address after a beat, worked out ahead from the registers (and for sample
        # 0, a constant), so that the offered beat's flags only pick one.
        with m.If(accept):
            m.d.sync += next_address.eq(Mux(beat.last, 0,
                                            Mux(beat.first, 1 % depth,
                                                Mux(next_address == depth - 1, 0,
                                                    next_address + 1))))
        # (Its word address is unused: the accept logic keeps its own.)
        after = self._step(m, 0, w.s1_channel, w.s1_x, w.s1_y, "after")
        with m.If(s1_valid):
            m.d.sync += [position[0].eq(Mux(s1_last, 0, after[1])),
                         position[1].eq(Mux(s1_last, 0, after[2])),
                         position[2].eq(Mux(s1_last, 0, after[3]))]
