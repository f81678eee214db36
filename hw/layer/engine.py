"""The whole layer: DeltaDetector -> FanoutAddressGenerator -> AccumulatorUnit -> SparseMaxPool."""

from amaranth.hdl import Module, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from eventconv.core.config import checked_config
from eventconv.core.ranges import ConfigError
from eventconv.hw.layer.accumulator import AccumulatorUnit
from eventconv.hw.layer.delta_detector import DeltaDetector
from eventconv.hw.layer.fanout import FanoutAddressGenerator
from eventconv.hw.layer.sparse_max_pool import SparseMaxPool
from eventconv.hw.layouts import EventStream, PixelStream
from eventconv.hw.primitives.stream_register import StreamRegister
from eventconv.hw.target import GENERIC, checked_target

__all__ = ["EventConvEngine", "CYCLE_COUNTER_WIDTH"]

CYCLE_COUNTER_WIDTH = 32
# A frame's first pixel waits until the frame before it has left (its end-of-frame beat given),
# so the contract's per-frame `cycles` is the frame's own cost, never time spent queued behind
# the frame before it.
FRAMES_IN_FLIGHT = 1
# Events wait here while the fan-out works through the taps of earlier ones, so the scan goes
# on (a deeper queue stalls the scan less on sparse frames; the bench measures it).
EVENT_QUEUE_DEPTH = 64
SETTLE_MARGIN = 16


class EventConvEngine(wiring.Component):
    """One event-driven layer (``eventconv/core/SPEC.md``): conv K x K, requantize, 2 x 2 max
    pool, sparse output.

    Parameters
    ----------
    config : :class:`eventconv.core.config.Config`
        Frame size, channels, kernel, weights and bias are built in; ``threshold``, ``shift``
        and ``mode`` of the configuration are only the suggested values of the runtime inputs.
        ``pixels_per_cycle`` and ``lanes`` set the parallelism.
    target : :class:`~eventconv.hw.target.Target`
        What the FPGA family wants, handed to every block. With ``ram_read_register`` every
        block RAM read port feeds exactly one register with no reset: the detector's
        reference word, the pool's bitmap bit, list entry and stored values, and its
        accumulator reads, whose data register is the accumulator unit's. With
        ``multiplier_registers`` the accumulators' multipliers get a stage of their own. The
        outputs are the same for every target; a frame takes a cycle or two more.

    Members
    -------
    pixels : ``In(PixelStream(pixels_per_cycle))``
        Samples in raster order, channels of a pixel adjacent; ``first``/``last`` on the first
        and last beat of a frame.
    events : ``Out(EventStream(Cout, H/2, W/2))``
        Output events ``(o, py, px, delta)`` of the pooled map, then one ``end_of_frame`` beat.
    threshold : ``In(8)``, shift : ``In(5)``, dense : ``In(1)``
        Runtime knobs. ``shift`` is also sampled while the reset clear runs (it sets the pooled
        map of the reset state). Change them only between frames.
    frame_events_in, frame_macs, frame_events_out, frame_cycles : ``Out(...)``
        Figures of the last completed frame, valid from the cycle after its end-of-frame beat is
        transferred until the next one: delta events, accumulate ops (counted on the fan-out
        link), output events, and cycles from its first pixel accepted to its end-of-frame beat
        given (both transfer cycles included).

    Frames do not overlap: a frame's first pixel is taken once the previous frame's end-of-frame
    beat is given (:data:`FRAMES_IN_FLIGHT`), and after reset once :attr:`settle_cycles` have
    passed (the blocks' clear sequences). The pixel input (the detector's) and the event output
    are register slices. Within a frame the scan, the fan-out and the
    accumulation overlap through a :data:`EVENT_QUEUE_DEPTH`-entry event queue; pooling starts
    at the frame's end. Register slices between the blocks cut the ready chain for timing.
    """

    def __init__(self, config, *, target=GENERIC):
        self.config = c = checked_config(config)
        self.target = checked_target(target)
        # What the golden model runs but this gateware does not build yet.
        for name, built in (("pool", 2), ("output_threshold", 0)):
            if getattr(c, name) != built:
                raise ConfigError(f"{name} must be {built} for the gateware in this version, "
                                  f"not {getattr(c, name)} (the model backend runs it)")
        self.event_queue_depth = EVENT_QUEUE_DEPTH
        self.detector = DeltaDetector(height=c.height, width=c.width, channels=c.channels_in,
                                      pixels_per_cycle=c.pixels_per_cycle,
                                      target=target)
        self.fanout = FanoutAddressGenerator(
            height=c.height, width=c.width, channels_in=c.channels_in,
            channels_out=c.channels_out, kernel_size=c.kernel_size, lanes=c.lanes)
        self.accumulator = AccumulatorUnit.from_config(c, target=target)
        self.pool = SparseMaxPool(height=c.height, width=c.width, channels_out=c.channels_out,
                                  accumulator_width=c.accumulator_width, bias=c.bias.tolist(),
                                  lanes=c.lanes, target=target)
        taps = c.kernel_size * c.kernel_size
        #: Cycles after reset before the first frame's first beat is taken: the longest clear
        #: sequence of the blocks, plus a margin for their pipelines.
        self.settle_cycles = max(self.detector.depth, self.accumulator.clear_cycles,
                                 self.pool.clear_cycles) + SETTLE_MARGIN
        self.events_in_width = (c.height * c.width * c.channels_in).bit_length()
        self.macs_width = (c.height * c.width * c.channels_in * c.channels_out * taps
                           ).bit_length()
        self.events_out_width = (c.channels_out * (c.height // 2) * (c.width // 2)
                                 ).bit_length()
        super().__init__({
            "pixels": In(PixelStream(c.pixels_per_cycle)),
            "events": Out(EventStream(c.channels_out, c.height // 2, c.width // 2)),
            "threshold": In(8, init=c.threshold),
            "shift": In(5, init=c.shift),
            "dense": In(1, init=int(c.mode == "dense")),
            "frame_events_in": Out(self.events_in_width),
            "frame_macs": Out(self.macs_width),
            "frame_events_out": Out(self.events_out_width),
            "frame_cycles": Out(CYCLE_COUNTER_WIDTH),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.detector = detector = self.detector
        m.submodules.fanout = fanout = self.fanout
        m.submodules.accumulator = accumulator = self.accumulator
        m.submodules.pool = pool = self.pool

        # Between the blocks: a short event queue lets the scan run on while the fan-out works
        # through an event's taps, and register slices cut the ready chain that would otherwise
        # run from the pool back to the pixel input (the iCE40's worst path).
        event_queue = fifo.SyncFIFOBuffered(width=detector.events.payload.shape().size,
                                            depth=self.event_queue_depth)
        m.submodules.event_queue = event_queue
        m.d.comb += [
            event_queue.w_data.eq(detector.events.payload),
            event_queue.w_en.eq(detector.events.valid),
            detector.events.ready.eq(event_queue.w_rdy),
        ]
        # The queue's RAM data goes straight into the fan-out's range arithmetic otherwise.
        # The register slices' skid registers load from a flip-flop enable
        # (``skid_loads_when_empty``), on both families: a better UP5K spread over seeds.
        m.submodules.event_register = event_register = StreamRegister(
            detector.events.payload.shape(), skid_loads_when_empty=True)
        m.d.comb += [
            event_register.i.payload.eq(event_queue.r_data),
            event_register.i.valid.eq(event_queue.r_rdy),
            event_queue.r_en.eq(event_register.i.ready),
        ]
        wiring.connect(m, event_register.o, fanout.events)
        for name, source, sink in (("update_register", fanout.updates, accumulator.updates),
                                   ("touched_register", accumulator.touched, pool.touched)):
            m.submodules[name] = register = StreamRegister(
                source.payload.shape(), skid_loads_when_empty=True)
            wiring.connect(m, source, register.i)
            wiring.connect(m, register.o, sink)
        wiring.connect(m, pool.read, accumulator.read)
        m.d.comb += [
            detector.threshold.eq(self.threshold),
            detector.dense.eq(self.dense),
            pool.shift.eq(self.shift),
            pool.dense.eq(self.dense),
        ]

        # Per-frame figures, each counted where it happens and queued until the frame leaves.
        now = Signal(CYCLE_COUNTER_WIDTH)
        m.d.sync += now.eq(now + 1)
        started = fifo.SyncFIFO(width=CYCLE_COUNTER_WIDTH, depth=FRAMES_IN_FLIGHT)
        events_in = fifo.SyncFIFO(width=self.events_in_width, depth=FRAMES_IN_FLIGHT)
        macs = fifo.SyncFIFO(width=self.macs_width, depth=FRAMES_IN_FLIGHT)
        m.submodules.started, m.submodules.events_in, m.submodules.macs = started, events_in, macs

        # The input: the detector's input is a register slice, so the producer's handshake ends
        # at flip-flops and one gate (the link and the engine sit far apart on the iCE40). A
        # frame's first beat is accepted once the frame before it has left (``frame_busy``, a
        # register); its time is then the frame's start.
        # After reset it also waits out the blocks' clear sequences, so the first frame's
        # `cycles` is its own cost too (a margin covers the clears' pipeline latencies).
        frame_busy = Signal(init=1)
        settle = Signal(range(self.settle_cycles + 1), init=self.settle_cycles)
        with m.If(settle != 0):
            m.d.sync += settle.eq(settle - 1)
            with m.If(settle == 1):
                m.d.sync += frame_busy.eq(0)
        first_blocked = self.pixels.payload.first & frame_busy
        first_taken = self.pixels.valid & self.pixels.ready & self.pixels.payload.first
        m.d.comb += [
            detector.pixels.payload.eq(self.pixels.payload),
            detector.pixels.valid.eq(self.pixels.valid & ~first_blocked),
            self.pixels.ready.eq(detector.pixels.ready & ~first_blocked),
        ]
        # The start time is queued a cycle later, from registers (the link and `started` sit far
        # apart); the figure is taken when the frame leaves, much later.
        start_time, start_taken = Signal(CYCLE_COUNTER_WIDTH), Signal()
        m.d.sync += [start_time.eq(now), start_taken.eq(first_taken)]
        m.d.comb += [started.w_data.eq(start_time), started.w_en.eq(start_taken)]
        with m.If(first_taken):
            m.d.sync += frame_busy.eq(1)

        def frame_counter(stream, fifo_, width, weight):
            # Counted a cycle after the transfer, from registers: the transfer is the end of a
            # ready chain, and the count is needed only when the frame leaves, much later.
            count = Signal(width)
            counted, counted_end = Signal(), Signal()
            transfer = stream.valid & stream.ready
            m.d.sync += [counted.eq(transfer & ~stream.payload.end_of_frame),
                         counted_end.eq(transfer & stream.payload.end_of_frame)]
            with m.If(counted_end):
                m.d.sync += count.eq(0)
            with m.Elif(counted):
                m.d.sync += count.eq(count + weight)
            m.d.comb += [fifo_.w_data.eq(count), fifo_.w_en.eq(counted_end)]

        # The FIFOs cannot overflow: a frame enters `started` before it reaches the others.
        frame_counter(detector.events, events_in, self.events_in_width, 1)
        frame_counter(fanout.updates, macs, self.macs_width, self.config.lanes)

        events_out = Signal(self.events_out_width)
        m.submodules.output_register = output = StreamRegister(
            pool.events.payload.shape(), skid_loads_when_empty=True)
        wiring.connect(m, pool.events, output.i)
        wiring.connect(m, output.o, wiring.flipped(self.events))
        leaving = self.events.valid & self.events.ready
        with m.If(leaving & self.events.payload.end_of_frame):
            m.d.sync += [
                self.frame_events_in.eq(events_in.r_data),
                self.frame_macs.eq(macs.r_data),
                self.frame_events_out.eq(events_out),
                self.frame_cycles.eq(now - started.r_data + 1),
                events_out.eq(0),
                frame_busy.eq(0),
            ]
            m.d.comb += [started.r_en.eq(1), events_in.r_en.eq(1), macs.r_en.eq(1)]
        with m.Elif(leaving):
            m.d.sync += events_out.eq(events_out + 1)

        return m
