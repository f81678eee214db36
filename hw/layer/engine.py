"""The engine: DeltaDetector -> layer 1 -> ... -> layer L, each layer an :class:`EventLayer`."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from eventconv.core.config import checked_config
from eventconv.core.network import Network
from eventconv.core.ranges import ConfigError
from eventconv.hw.layer.address_events import AddressEventDetector, CameraEventStream
from eventconv.hw.layer.delta_detector import DeltaDetector
from eventconv.hw.layer.layer import EVENT_QUEUE_DEPTH, EventLayer, input_slacks
from eventconv.hw.layouts import EventStream, PixelStream, UploadSignature
from eventconv.hw.primitives.stream_register import StreamRegister
from eventconv.hw.target import GENERIC, checked_target
from eventconv.protocol.upload import upload_memories

__all__ = ["EventConvEngine", "CYCLE_COUNTER_WIDTH", "EVENT_QUEUE_DEPTH"]

CYCLE_COUNTER_WIDTH = 32
SETTLE_MARGIN = 16


def engine_network(config):
    """The :class:`Network` an engine builds: a network, or the one-layer form of a Config."""
    if isinstance(config, Network):
        network = config
    else:
        network = Network.of(checked_config(config))
    for index, layer in enumerate(network.layers):
        # The accumulators are banked by 2 x 2 windows, also where a layer does not pool.
        for name in ("height", "width"):
            if getattr(layer, name) % 2:
                where = "" if network.single else f"layers[{index}]."
                raise ConfigError(f"{where}{name} must be even for the gateware in this "
                                  f"version, not {getattr(layer, name)} (the model backend "
                                  "runs it)")
    return network


def _upload_bases(network):
    """Each layer's first memory number (:func:`eventconv.protocol.upload.upload_memories`)."""
    bases = {}
    for number, memory in enumerate(upload_memories(network)):
        bases.setdefault(memory.layer, number)
    return [bases[index] for index in range(len(network.layers))]


class EventConvEngine(wiring.Component):
    """An event-driven network (``eventconv/core/SPEC.md``): the delta detector, then layers
    chained by their events, each conv K x K, requantize, pool (2 x 2 or none), sparse output.

    Parameters
    ----------
    config : :class:`eventconv.core.config.Config` or :class:`eventconv.core.network.Network`
        One layer, or a network. Sizes, channels, kernels, weights, bias and ``pool`` are built
        in; ``threshold``, ``shift``, ``output_threshold`` and ``mode`` are only the suggested
        values of the runtime inputs. ``pixels_per_cycle`` and ``lanes`` set the parallelism.
    target : :class:`~eventconv.hw.target.Target`
        What the FPGA family wants, handed to every block. With ``ram_read_register`` every
        block RAM read port feeds exactly one register with no reset; with
        ``multiplier_registers`` the multipliers get a stage of their own. The outputs are the
        same for every target; a frame takes a cycle or two more.
    uploadable : bool
        Built for uploads (:mod:`eventconv.protocol.upload`, as a board is): each layer's
        weights in RAM and bias in registers, written through ``upload``, its accumulators
        wide enough for any weights of its shape. Upload, then reset the engine.
    address_events : bool
        Take an event camera's events (:class:`AddressEventDetector`: ``camera`` and ``step``)
        instead of frames (``pixels``); the results are those of the windows' count frames,
        and a window's cycles grow with its events, not with the frame size.

    Members
    -------
    pixels : ``In(PixelStream(pixels_per_cycle))``
        Samples in raster order, channels of a pixel adjacent; ``first``/``last`` on the first
        and last beat of a frame. (Without ``address_events``.)
    camera : ``In(CameraEventStream(Cin, H, W))``, step : ``In(8)``
        With ``address_events``: a window's binned camera events ``(c, y, x)``, then one
        ``end_of_window`` beat; each event counts ``step`` (SPEC "Event-camera input"). A
        window is a frame: its first beat (the end-of-window beat of an empty window) starts
        it.
    events : ``Out(EventStream(C, H', W'))``
        Output events ``(o, y, x, delta)`` of the last layer's map, then one ``end_of_frame``
        beat.
    threshold : ``In(8)``, dense : ``In(1)``
        Runtime knobs of the detector (``dense`` also of every pool).
    shift : ``In(ArrayLayout(5, L))``, output_threshold : ``In(ArrayLayout(8, L))``
        Runtime knobs of each layer (element i for layer i; for one layer, plain 5 and 8 bits
        wide). They are also used by the priming after reset. Change knobs only between frames.
    frame_events_in, frame_macs, frame_events_out : ``Out(ArrayLayout(width, L))``
        Figures of each layer in the last completed frame, valid from the cycle after its
        end-of-frame beat is transferred until the next one: input events, accumulate ops,
        output events.
    upload : ``In(UploadSignature())`` (with ``uploadable``)
        Uploaded weight and bias bytes, to every layer (each takes its own memories).
    frame_cycles : ``Out(32)``
        Cycles from the frame's first pixel accepted to its end-of-frame beat given (both
        transfer cycles included).

    After reset, once :attr:`settle_cycles` have passed (the blocks' clear sequences), the
    engine primes itself: one frame without events runs through every layer with the output
    thresholds held at 0, each pool evaluating every window against a stored map of 0, so layer
    i emits its reset map into layer i + 1 (SPEC: later layers start from the reset map of the
    layer before); the last layer's events of that frame are swallowed and nothing is counted.
    The first pixel is taken after that.

    Frames do not overlap: a frame's first pixel is taken once the previous frame's end-of-frame
    beat is given, so the per-frame ``cycles`` is the frame's own cost. Within a frame the
    layers overlap: layer i + 1 takes layer i's events while layer i's pool still gives them,
    and with ``target.pool_read_port`` (the generic target) each pool gives the windows no
    later event can touch while the frame still runs (the delta detector's events come in
    raster order; each layer's output order bounds how far back the next one's go:
    :func:`~eventconv.hw.layer.layer.output_slack`), so every layer works while the layer
    before it does. The address-event detector's order is its own: behind it the pools
    evaluate after the frame's end.
    The pixel input (the detector's), the links between layers and the event output are
    register slices.
    """

    def __init__(self, config, *, target=GENERIC, address_events=False, uploadable=False):
        self.network = network = engine_network(config)
        self.config = network.first
        self.target = checked_target(target)
        self.address_events = bool(address_events)
        first = network.first
        if self.address_events:
            self.detector = AddressEventDetector(height=first.height, width=first.width,
                                                 channels=first.channels_in, target=target)
            detector_settle = self.detector.clear_cycles
            source = {"camera": In(CameraEventStream(first.channels_in, first.height,
                                                     first.width)),
                      "step": In(8, init=network.events.step if network.events else 1)}
        else:
            self.detector = DeltaDetector(height=first.height, width=first.width,
                                          channels=first.channels_in,
                                          pixels_per_cycle=first.pixels_per_cycle,
                                          target=target)
            detector_settle = self.detector.depth
            source = {"pixels": In(PixelStream(first.pixels_per_cycle))}
        self.uploadable = bool(uploadable)
        bases = _upload_bases(network) if self.uploadable else [None] * len(network.layers)
        slacks = input_slacks(network, self.address_events)
        self.layers = [EventLayer(layer, target=target, upload_base=base, input_slack=slack)
                       for layer, base, slack in zip(network.layers, bases, slacks,
                                                     strict=True)]
        #: Cycles after reset before the priming frame starts: the longest clear sequence of
        #: the blocks, plus a margin for their pipelines.
        self.settle_cycles = max(detector_settle,
                                 *(layer.clear_cycles for layer in self.layers)) + SETTLE_MARGIN
        count = len(self.layers)
        self.events_in_width = max(layer.events_in_width for layer in self.layers)
        self.macs_width = max(layer.macs_width for layer in self.layers)
        self.events_out_width = max(layer.events_in_width for layer in self.layers[1:]) \
            if count > 1 else 0
        out_c, out_h, out_w = network.output_shape
        self.events_out_width = max(self.events_out_width, (out_c * out_h * out_w).bit_length())

        def per_layer(width):
            return width if count == 1 else data.ArrayLayout(width, count)

        super().__init__({
            **source,
            "events": Out(EventStream(out_c, out_h, out_w)),
            "threshold": In(8, init=first.threshold),
            "dense": In(1, init=int(first.mode == "dense")),
            "shift": In(per_layer(5),
                        init=self._init([c.shift for c in network.layers])),
            "output_threshold": In(per_layer(8),
                                   init=self._init([c.output_threshold
                                                    for c in network.layers])),
            "frame_events_in": Out(per_layer(self.events_in_width)),
            "frame_macs": Out(per_layer(self.macs_width)),
            "frame_events_out": Out(per_layer(self.events_out_width)),
            "frame_cycles": Out(CYCLE_COUNTER_WIDTH),
            **({"upload": In(UploadSignature())} if self.uploadable else {}),
        })

    @staticmethod
    def _init(values):
        return list(values) if len(values) > 1 else values[0]

    def _element(self, member, index):
        """Layer ``index``'s element of a per-layer member (the member itself for one layer)."""
        return member if len(self.layers) == 1 else member[index]

    def elaborate(self, platform):
        m = Module()
        m.submodules.detector = detector = self.detector
        for index, layer in enumerate(self.layers):
            m.submodules[f"layer{index}"] = layer

        priming = Signal(init=1)
        inject = self._settle_then_inject(m)
        self._input(m, priming)

        # Layer 1 takes the detector's events, and the priming frame's end-of-frame beat.
        first = self.layers[0]
        m.d.comb += [
            first.events.payload.eq(detector.events.payload),
            first.events.valid.eq(detector.events.valid),
            detector.events.ready.eq(first.events.ready),
        ]
        with m.If(inject):
            m.d.comb += [first.events.payload.end_of_frame.eq(1),
                         first.events.valid.eq(1)]
        # Between layers, a register slice: the two pools' pipelines sit far apart.
        for index in range(1, len(self.layers)):
            m.submodules[f"link{index}"] = link = StreamRegister(
                self.layers[index - 1].output.payload.shape(), skid_loads_when_empty=True)
            wiring.connect(m, self.layers[index - 1].output, link.i)
            wiring.connect(m, link.o, self.layers[index].events)
        m.d.comb += [detector.threshold.eq(self.threshold), detector.dense.eq(self.dense)]
        if self.address_events:
            m.d.comb += detector.step.eq(self.step)
        for index, layer in enumerate(self.layers):
            m.d.comb += [
                layer.shift.eq(self._element(self.shift, index)),
                layer.output_threshold.eq(
                    self._element(self.output_threshold, index) & ~priming.replicate(8)),
                layer.dense.eq(self.dense & ~priming),
                layer.count.eq(~priming),
            ]
        if self.uploadable:
            for layer in self.layers:
                m.d.comb += [getattr(layer.upload, name).eq(getattr(self.upload, name))
                             for name in ("memory", "address", "data", "en")]
        self._output(m, priming)
        return m

    def _settle_then_inject(self, m):
        """After reset: wait out the clears, then one cycle that injects the priming frame's
        end-of-frame beat (the queue is empty then, so it is taken)."""
        settle = Signal(range(self.settle_cycles + 1), init=self.settle_cycles)
        inject = Signal()
        with m.If(settle != 0):
            m.d.sync += settle.eq(settle - 1)
        m.d.sync += inject.eq(settle == 1)
        return inject

    def _input(self, m, priming):
        """The input (pixels, or camera events). A frame's first beat is taken once the engine
        is primed and the frame before has left (``frame_busy``, a register); its time is the
        frame's start."""
        self.frame_busy = frame_busy = Signal(init=1)
        source, sink = (self.camera, self.detector.camera) if self.address_events else \
            (self.pixels, self.detector.pixels)
        taken = source.valid & source.ready
        if self.address_events:
            # A window's first beat is the first after the last window's end (an empty
            # window's is its end-of-window beat).
            window_open = Signal()
            first = ~window_open
            with m.If(taken):
                m.d.sync += window_open.eq(~source.payload.end_of_window)
        else:
            first = source.payload.first
        first_blocked = first & frame_busy
        first_taken = taken & first
        m.d.comb += [
            sink.payload.eq(source.payload),
            sink.valid.eq(source.valid & ~first_blocked),
            source.ready.eq(sink.ready & ~first_blocked),
        ]
        # The frame's cycles so far, counted from the cycle of its first beat (1 in that
        # cycle). Frames do not overlap here (``frame_busy``), so one counter serves. It starts
        # a cycle later, from registers (the link and the figures sit far apart), at 3.
        self.elapsed = elapsed = Signal(CYCLE_COUNTER_WIDTH)
        start_taken = Signal()
        m.d.sync += [start_taken.eq(first_taken), elapsed.eq(Mux(start_taken, 3, elapsed + 1))]
        with m.If(first_taken):
            m.d.sync += frame_busy.eq(1)

    def _output(self, m, priming):
        """The event output, swallowed while priming; the figures when a frame leaves."""
        m.submodules.output_register = output = StreamRegister(
            self.layers[-1].output.payload.shape(), skid_loads_when_empty=True)
        wiring.connect(m, self.layers[-1].output, output.i)
        m.d.comb += [
            self.events.payload.eq(output.o.payload),
            self.events.valid.eq(output.o.valid & ~priming),
            output.o.ready.eq(self.events.ready | priming),
        ]
        leaving = output.o.valid & output.o.ready
        leaving_end = leaving & output.o.payload.end_of_frame
        events_out = Signal(self.events_out_width)
        count = len(self.layers)
        with m.If(leaving_end & priming):
            m.d.sync += [priming.eq(0), self.frame_busy.eq(0)]
        with m.Elif(leaving_end):
            m.d.sync += [self.frame_cycles.eq(self.elapsed),
                         events_out.eq(0), self.frame_busy.eq(0)]
            for index, layer in enumerate(self.layers):
                m.d.sync += [
                    self._element(self.frame_events_in, index).eq(layer.events_in),
                    self._element(self.frame_macs, index).eq(layer.macs),
                    self._element(self.frame_events_out, index).eq(
                        events_out if index == count - 1
                        else self.layers[index + 1].events_in),
                ]
                m.d.comb += layer.clear.eq(1)
        with m.Elif(leaving & ~priming):
            m.d.sync += events_out.eq(events_out + 1)
