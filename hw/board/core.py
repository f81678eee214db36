"""The board minus clock and pins: UART, receive FIFO, host link and engine."""

from amaranth.hdl import ClockDomain, ClockSignal, DomainRenamer, Module, ResetSignal, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from eventconv.hw.layer.engine import EventConvEngine
from eventconv.hw.link.host_link import HostLink
from eventconv.hw.link.uart import UARTReceiver, UARTTransmitter, uart_divisor
from eventconv.hw.target import GENERIC
from eventconv.protocol.codec import as_network
from eventconv.protocol.constants import DEFAULT_BAUD_RATE, FIGURE_WIDTH

__all__ = ["BoardCore", "RECEIVE_FIFO_DEPTH", "LINK_TIMEOUT_SECONDS"]

# Bytes the receiver may deliver while the link is busy at a packet's end (a few cycles) or
# waits for the transmitter to take an answer (one packet's time at most).
RECEIVE_FIFO_DEPTH = 16
LINK_TIMEOUT_SECONDS = 0.05


class BoardCore(wiring.Component):
    """UART, receive FIFO, host link and engine: the board minus clock and pins.

    Parameters
    ----------
    config : :class:`eventconv.core.config.Config` or :class:`eventconv.core.network.Network`
    clock_frequency : int or float
        Of the ``sync`` domain, in Hz (sets the UART divisor and the link timeout).
    baud_rate : int
        UART rate (8N1).
    chunk, window : int
        As :class:`~eventconv.hw.link.host_link.HostLink`.
    timeout_cycles : int or None
        The link's packet timeout; None: :data:`LINK_TIMEOUT_SECONDS` worth of cycles.
    target : :class:`~eventconv.hw.target.Target`
        What the FPGA family wants (engine and host link follow it).
    uploads : bool
        Built for uploads (:mod:`eventconv.protocol.upload`): the link takes WEIGHTS into the
        engine's weight memories and bias registers, so one bitstream serves any weights of
        its shape. Without, WEIGHTS is an unknown type (COMMAND) and INFO's shape is 0.

    Members
    -------
    rx : ``In(1)``
        Serial line from the host (idle high).
    tx : ``Out(1)``
        Serial line to the host.
    error : ``Out(1)``
        Pulse per ERROR answer.

    Raises
    ------
    TypeError, ValueError
        As the UART and the host link, or an engine figure wider than 32 bits.
    """

    def __init__(self, config, *, clock_frequency, baud_rate=DEFAULT_BAUD_RATE, chunk=256,
                 window=2, timeout_cycles=None, target=GENERIC, uploads=True):
        network = as_network(config)
        uart_divisor(clock_frequency, baud_rate)
        if timeout_cycles is None:
            timeout_cycles = int(clock_frequency * LINK_TIMEOUT_SECONDS)
        self.network, self.config = network, network.first
        self.clock_frequency, self.baud_rate = clock_frequency, baud_rate
        self.receiver = UARTReceiver(clock_frequency=clock_frequency, baud_rate=baud_rate)
        self.transmitter = UARTTransmitter(clock_frequency=clock_frequency,
                                           baud_rate=baud_rate)
        self.uploads = bool(uploads)
        self.link = HostLink(config=network, chunk=chunk, window=window,
                             timeout_cycles=timeout_cycles,
                             clock_frequency=int(round(clock_frequency)),
                             target=target, uploads=self.uploads)
        self.engine = EventConvEngine(network, target=target, uploadable=self.uploads)
        for name in ("events_in_width", "macs_width", "events_out_width"):
            if getattr(self.engine, name) > FIGURE_WIDTH:
                raise ValueError(f"engine figure {name} must be at most {FIGURE_WIDTH} bits "
                                 f"for the link, not {getattr(self.engine, name)}")
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = self.receiver
        m.submodules.transmitter = transmitter = self.transmitter
        m.submodules.link = link = self.link
        # CONFIG resets the engine alone: the link keeps its state and answers. The engine
        # runs in a domain of its own on the same clock, with an asynchronous reset from one
        # flip-flop (the board's reset or CONFIG's pulse, a cycle later; it is released on a
        # clock edge). A synchronous reset would sit in front of every engine flip-flop's
        # data and enable (an iCE40 flip-flop resets only when enabled), on the critical paths.
        engine_reset = Signal(init=1, reset_less=True)
        m.d.sync += engine_reset.eq(ResetSignal("sync") | link.engine_reset)
        m.domains.engine = ClockDomain("engine", async_reset=True, local=True)
        m.d.comb += [ClockSignal("engine").eq(ClockSignal("sync")),
                     ResetSignal("engine").eq(engine_reset)]
        m.submodules.engine = DomainRenamer("engine")(self.engine)
        engine = self.engine
        m.submodules.receive_fifo = receive_fifo = fifo.SyncFIFOBuffered(
            width=len(receiver.received.payload.as_value()), depth=RECEIVE_FIFO_DEPTH)

        m.d.comb += [
            receiver.rx.eq(self.rx),
            self.tx.eq(transmitter.tx),
            self.error.eq(link.error),
            receive_fifo.w_data.eq(receiver.received.payload),
            receive_fifo.w_en.eq(receiver.received.valid),
            receiver.received.ready.eq(receive_fifo.w_rdy),
            link.received.payload.eq(receive_fifo.r_data),
            link.received.valid.eq(receive_fifo.r_rdy),
            receive_fifo.r_en.eq(link.received.ready),
            engine.threshold.eq(link.threshold),
            engine.dense.eq(link.dense),
            engine.shift.eq(link.shift),
            engine.output_threshold.eq(link.output_threshold),
            link.frame_cycles.eq(engine.frame_cycles),
        ]
        # The figures element by element: each zero-extended to the link's 32 bits.
        for name in ("frame_events_in", "frame_macs", "frame_events_out"):
            ours, theirs = getattr(link, name), getattr(engine, name)
            if len(self.network.layers) == 1:
                m.d.comb += ours.eq(theirs)
            else:
                m.d.comb += [ours[i].eq(theirs[i]) for i in range(len(self.network.layers))]
        wiring.connect(m, link.send, transmitter.send)
        wiring.connect(m, link.pixels, engine.pixels)
        if self.uploads:
            wiring.connect(m, link.upload, engine.upload)
        # The link stops taking events in CONFIG's cycle; the engine resets in the next, so
        # the events it offers then (of frames CONFIG dropped) are not taken either. The
        # feeder is idle then (CONFIG waits for it): no pixel beat is lost.
        m.d.comb += [
            link.events.payload.eq(engine.events.payload),
            link.events.valid.eq(engine.events.valid & ~engine_reset),
            engine.events.ready.eq(link.events.ready & ~engine_reset),
        ]
        return m
