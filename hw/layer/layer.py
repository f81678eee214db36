"""One conv layer fed by events: event queue -> fan-out -> accumulators -> sparse pool.

The part of a layer after its input events (SPEC steps 2-5). The first layer of an engine gets
its events from the delta detector; a later one from the layer before (SPEC, "A network").
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from eventconv.core.config import checked_config
from eventconv.hw.layer.accumulator import AccumulatorUnit
from eventconv.hw.layer.accumulator_spram import SpramAccumulatorUnit
from eventconv.hw.layer.fanout import FanoutAddressGenerator
from eventconv.hw.layer.sparse_max_pool import SparseMaxPool
from eventconv.hw.layouts import EventStream, UploadSignature
from eventconv.hw.primitives.stream_register import StreamRegister
from eventconv.hw.target import GENERIC, checked_target

__all__ = ["EventLayer", "EVENT_QUEUE_DEPTH", "accumulator_unit"]

# Events wait here while the fan-out works through the taps of earlier ones, so the producer
# (the detector's scan, or the layer before) goes on; the bench measures the depth's effect.
EVENT_QUEUE_DEPTH = 64


def pool_row_slack(config, input_slack):
    """The pool's ``row_slack`` (window rows) for a layer whose input events may each lie up
    to ``input_slack`` rows above an earlier one (0: rows in order, as the delta detector
    gives them; None: any order, as the address-event detector's): a touched window's event
    lies at most K // 2 rows below it, and a later event's updates reach K // 2 rows above
    that event's row minus the input's slack."""
    if input_slack is None:
        return None
    return config.kernel_size // 2 + (input_slack + 1) // 2


def output_slack(config, input_slack):
    """How many rows a layer's output event may lie above an earlier one: the pool gives its
    windows in the order they were listed, each at most ``row_slack`` window rows above an
    earlier one (with ``pool`` 1 the window's two rows as well)."""
    slack = pool_row_slack(config, input_slack)
    if slack is None:
        return None
    return slack if config.pool == 2 else 2 * slack + 1


def input_slacks(network, address_events=False):
    """Each layer's input slack in ``network`` (a :class:`~eventconv.core.network.Network`):
    the first layer's 0 behind the delta detector (raster order), None behind the
    address-event detector (an order of its own); each later layer's the output slack of the
    layer before (:func:`output_slack`)."""
    slacks, slack = [], None if address_events else 0
    for config in network.layers:
        slacks.append(slack)
        slack = output_slack(config, slack)
    return slacks


def accumulator_unit(config, *, target=GENERIC, upload_base=None):
    """The accumulator unit ``target`` wants for ``config``: in single-port RAM with
    ``target.spram_accumulators``, else in block RAM banks."""
    unit = SpramAccumulatorUnit if target.spram_accumulators else AccumulatorUnit
    return unit.from_config(config, target=target, upload_base=upload_base)


class EventLayer(wiring.Component):
    """Fan-out, accumulate, requantize, pool and sparse output of one layer's input events.

    Parameters
    ----------
    config : :class:`eventconv.core.config.Config`
        The layer (for a network, with its derived size and input channels). Kernel, weights,
        bias, ``pool`` and ``lanes`` are built in; ``shift`` and ``output_threshold`` are the
        runtime inputs' suggested values.
    target : :class:`~eventconv.hw.target.Target`
        Handed to the accumulators (:func:`accumulator_unit`) and the pool.
    upload_base : int or None
        Not None: built for uploads, the layer's first memory number
        (:class:`~eventconv.hw.layer.accumulator.AccumulatorUnit`).
    input_slack : int or None
        How many rows an input event may lie above an earlier one in a frame (0: raster
        order; None, the default: any order). With it the pool evaluates windows while the
        frame runs (:func:`pool_row_slack`); :attr:`output_slack` is the same figure for the
        layer's output, for the next layer.

    Members
    -------
    events : ``In(EventStream(Cin, H, W))``
        Input events, each frame closed by an ``end_of_frame`` beat.
    output : ``Out(EventStream(Cout, H/pool, W/pool))``
        Output events of the layer's map, then one ``end_of_frame`` beat per frame.
    shift : ``In(5)``, output_threshold : ``In(8)``, dense : ``In(1)``
        Runtime knobs of the pool; change them only between frames.
    count : ``In(1)``
        The figures below count while it is high.
    clear : ``In(1)``
        Sets the figures to 0 (after they were read).
    upload : ``In(UploadSignature())`` (with ``upload_base``)
        Uploaded weight and bias bytes, to the accumulator unit.
    events_in, macs : ``Out(...)``
        Input events and accumulate ops counted since the last ``clear``, each a cycle after
        its transfer.

    After reset the accumulators hold the bias and the pool's stored map 0 with every window
    listed: the first ``end_of_frame`` beat (a frame without events) makes the layer emit its
    reset map as events, the priming frame of :class:`~eventconv.hw.layer.engine.EventConvEngine`.
    """

    def __init__(self, config, *, target=GENERIC, upload_base=None, input_slack=None):
        self.config = c = checked_config(config)
        self.target = checked_target(target)
        self.upload_base = upload_base
        self.fanout = FanoutAddressGenerator(
            height=c.height, width=c.width, channels_in=c.channels_in,
            channels_out=c.channels_out, kernel_size=c.kernel_size, lanes=c.lanes)
        self.accumulator = accumulator_unit(c, target=target, upload_base=upload_base)
        self.pool = SparseMaxPool(height=c.height, width=c.width, channels_out=c.channels_out,
                                  accumulator_width=self.accumulator.accumulator_width,
                                  lanes=c.lanes,
                                  pool=c.pool, target=target,
                                  row_slack=pool_row_slack(c, input_slack))
        #: How many rows an output event may lie above an earlier one (None: any).
        self.output_slack = output_slack(c, input_slack)
        #: Cycles after reset before the layer's clear sequences are done.
        self.clear_cycles = max(self.accumulator.clear_cycles, self.pool.clear_cycles)
        taps = c.kernel_size * c.kernel_size
        self.events_in_width = (c.height * c.width * c.channels_in).bit_length()
        self.macs_width = (c.height * c.width * c.channels_in * c.channels_out * taps
                           ).bit_length()
        out_h, out_w = c.output_shape[1:]
        super().__init__({
            "events": In(EventStream(c.channels_in, c.height, c.width)),
            "output": Out(EventStream(c.channels_out, out_h, out_w)),
            "shift": In(5, init=c.shift),
            "output_threshold": In(8, init=c.output_threshold),
            "dense": In(1, init=int(c.mode == "dense")),
            "count": In(1),
            "clear": In(1),
            "events_in": Out(self.events_in_width),
            "macs": Out(self.macs_width),
            **({"upload": In(UploadSignature())} if upload_base is not None else {}),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fanout = fanout = self.fanout
        m.submodules.accumulator = accumulator = self.accumulator
        m.submodules.pool = pool = self.pool

        # A short queue lets the producer run on while the fan-out works through an event's
        # taps; its RAM data is registered before the fan-out's range arithmetic, and register
        # slices cut the ready chain from the pool back to the input where the accumulator
        # unit asks for them (``PORT_REGISTERS``: not the SPRAM unit, whose ports come from
        # registers). The skid registers load from a flip-flop enable.
        queue = fifo.SyncFIFOBuffered(width=self.events.payload.shape().size,
                                      depth=EVENT_QUEUE_DEPTH)
        m.submodules.event_queue = queue
        m.d.comb += [
            queue.w_data.eq(self.events.payload),
            queue.w_en.eq(self.events.valid),
            self.events.ready.eq(queue.w_rdy),
        ]
        m.submodules.event_register = event_register = StreamRegister(
            self.events.payload.shape(), skid_loads_when_empty=True)
        m.d.comb += [
            event_register.i.payload.eq(queue.r_data),
            event_register.i.valid.eq(queue.r_rdy),
            queue.r_en.eq(event_register.i.ready),
        ]
        wiring.connect(m, event_register.o, fanout.events)
        for name, source, sink in (("update_register", fanout.updates, accumulator.updates),
                                   ("touched_register", accumulator.touched, pool.touched)):
            if not accumulator.PORT_REGISTERS:
                wiring.connect(m, source, sink)
                continue
            m.submodules[name] = register = StreamRegister(
                source.payload.shape(), skid_loads_when_empty=True)
            wiring.connect(m, source, register.i)
            wiring.connect(m, register.o, sink)
        wiring.connect(m, pool.read, accumulator.read)
        if self.upload_base is not None:
            wiring.connect(m, wiring.flipped(self.upload), accumulator.upload)
        wiring.connect(m, pool.events, wiring.flipped(self.output))
        m.d.comb += [
            pool.shift.eq(self.shift),
            pool.output_threshold.eq(self.output_threshold),
            pool.dense.eq(self.dense),
        ]
        self._count(m, self.events, self.events_in, 1)
        self._count(m, fanout.updates, self.macs, self.config.lanes)
        return m

    def _count(self, m, stream, count, weight):
        # Counted a cycle after the transfer, from registers: the transfer is the end of a
        # ready chain, and the figure is read only when the frame has left the engine.
        counted = Signal()
        m.d.sync += counted.eq(stream.valid & stream.ready & ~stream.payload.end_of_frame
                               & self.count)
        with m.If(self.clear):
            m.d.sync += count.eq(0)
        with m.Elif(counted):
            m.d.sync += count.eq(count + weight)
