"""Board top: the engine, the host link and a UART on the board's USB serial port.

:class:`BoardCore` is everything that is not board-specific (UART receiver, receive FIFO,
:class:`~eventconv.hw.host_link.HostLink`, :class:`~eventconv.hw.engine.EventConvEngine`);
it is what the co-simulation runs. :class:`EventConvBoard` adds the board: its oscillator, a
PLL up to the engine clock, a reset held until the PLL locks, the USB serial pins and two
status LEDs. Boards (amaranth-boards platforms):

============  =====================  ===========  ==========  ===========================
board         device                 oscillator   clock       USB serial (FPGA rx, tx)
============  =====================  ===========  ==========  ===========================
icebreaker    iCE40UP5K-SG48         12 MHz       48 MHz      FT2232H channel B: 6, 9
ulx3s-85f     LFE5U-85F-6BG381C      25 MHz       125 MHz     FT231X: M1, L4
============  =====================  ===========  ==========  ===========================

LEDs: one blinks at about 1.4 Hz (the clock runs), one lights for about 0.3 s after each
ERROR answer (iCEBreaker: green, red; ULX3S: LED 0, LED 1).
"""

from dataclasses import dataclass

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    DomainRenamer,
    Instance,
    Module,
    ResetSignal,
    Signal,
)
from amaranth.lib import fifo, io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from ..config import Config
from ..driver import DEFAULT_BAUD_RATE
from .engine import EventConvEngine
from .host_link import FIGURE_WIDTH, HostLink
from .uart import UARTReceiver, UARTTransmitter, uart_divisor

__all__ = ["BoardCore", "EventConvBoard", "BOARDS", "BoardSpec", "ice40_pll_parameters",
           "ecp5_pll_parameters", "default_config", "RECEIVE_FIFO_DEPTH"]

# Bytes the receiver may deliver while the link is busy at a packet's end (a few cycles) or
# waits for the transmitter to take an answer (one packet's time at most).
RECEIVE_FIFO_DEPTH = 16
LINK_TIMEOUT_SECONDS = 0.05
# Frame side of the default layer per board (see default_config). iCEBreaker: 24 x 24 is the
# largest square whose memories fit the UP5K's 30 block RAMs (29 used; 32 x 32 needs 44);
# 64 x 64 needs the accumulators in SPRAM. ULX3S 85F: 64 x 64 fits its block RAM easily.
DEFAULT_FRAME_SIDE = {"icebreaker": 22, "ulx3s-85f": 64}
# Lanes of the default layer: the ULX3S uses 8 (one output channel each: a bank is then 1024
# words, one block RAM deep, so no RAM-depth multiplexer follows the RAMs, which its clock
# needs). Pixels per cycle stay 1: the UART, not the engine, limits the board's frame rate.
DEFAULT_LANES = {"icebreaker": 1, "ulx3s-85f": 8}


@dataclass(frozen=True)
class BoardSpec:
    name: str
    platform: str             # amaranth_boards class, "module:Class"
    oscillator: str           # resource name
    oscillator_frequency: float
    clock_frequency: float    # the engine clock the PLL makes
    family: str               # "ice40" or "ecp5"
    alive_led: tuple
    error_led: tuple

    def create_platform(self):
        import importlib
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(module), cls)()


# Engine clocks (measured 2026-11-24, README "make synth"). iCE40 UP5K: 48 MHz, the target
# (12 MHz x 4); nextpnr gives 49.44 / 47.50 / 45.92 / 48.72 / 49.49 MHz over seeds 1-5, and
# the build tries seeds in turn until one meets it. ECP5 85F: 125 MHz, the target (25 MHz x 5),
# built with ``registered_ram_outputs``: every block RAM read port feeds one register, which
# the build then moves into the RAM (``REGMODE OUTREG``, :mod:`eventconv.ecp5_outreg`: 0.96
# instead of 5.83 ns from clock to data in nextpnr's model), and the multipliers use the
# MULT18X18D's own registers; nextpnr gives 130.99 / 128.44 MHz on seeds 1 and 2.
BOARDS = {
    "icebreaker": BoardSpec("icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform",
                            "clk12", 12e6, 48e6, "ice40", ("led_g", 0), ("led_r", 0)),
    "ulx3s-85f": BoardSpec("ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform",
                           "clk25", 25e6, 125e6, "ecp5", ("led", 0), ("led", 1)),
}


def default_config(board="icebreaker"):
    """The layer a board is built with when no configuration is given: the filter bank
    (:func:`eventconv.kernels.filter_bank_config`), K = 3, Cout = 8, on a square frame of
    :data:`DEFAULT_FRAME_SIDE` (iCEBreaker: the largest whose memories fit the UP5K's block
    RAM)."""
    from ..kernels import filter_bank_config
    if board not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
    side = DEFAULT_FRAME_SIDE[board]
    return filter_bank_config(side, side, lanes=DEFAULT_LANES[board])


def ice40_pll_parameters(input_frequency, output_frequency):
    """SB_PLL40 ``SIMPLE`` feedback settings nearest to ``output_frequency`` (as icepll).

    Returns ``(parameters, achieved_frequency)``.
    """
    best = None
    for divr in range(16):
        pfd = input_frequency / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                out = vco / 2 ** divq
                error = abs(out - output_frequency)
                if best is None or error < best[0]:
                    best = (error, divr, divf, divq, pfd, out)
    if best is None:
        raise ValueError(f"no iCE40 PLL setting for {input_frequency} Hz in")
    _, divr, divf, divq, pfd, out = best
    bounds = (17e6, 26e6, 44e6, 66e6, 101e6)
    filter_range = 1 + sum(pfd >= b for b in bounds)
    return {"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filter_range}, out


def ecp5_pll_parameters(input_frequency, output_frequency):
    """EHXPLLL settings (CLKOP feedback) nearest to ``output_frequency`` (as ecppll).

    Returns ``(parameters, achieved_frequency)``.
    """
    best = None
    for input_div in range(1, 129):
        pfd = input_frequency / input_div
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for feedback_div in range(1, 81):
            out = pfd * feedback_div
            for output_div in range(1, 129):
                vco = out * output_div
                if not 400e6 <= vco <= 800e6:
                    continue
                key = (abs(out - output_frequency), abs(vco - 600e6))
                if best is None or key < best[0]:
                    best = (key, input_div, feedback_div, output_div, out)
    if best is None:
        raise ValueError(f"no ECP5 PLL setting for {input_frequency} Hz in")
    _, input_div, feedback_div, output_div, out = best
    return {"CLKI_DIV": input_div, "CLKFB_DIV": feedback_div, "CLKOP_DIV": output_div,
            "CLKOP_CPHASE": (output_div - 1) // 2, "CLKOP_FPHASE": 0}, out


class BoardCore(wiring.Component):
    """UART, receive FIFO, host link and engine: the board minus clock and pins.

    Parameters
    ----------
    config : :class:`eventconv.config.Config`
    clock_frequency : int or float
        Of the ``sync`` domain, in Hz (sets the UART divisor and the link timeout).
    baud_rate : int
        UART rate (8N1).
    chunk, window : int
        As :class:`~eventconv.hw.host_link.HostLink`.
    timeout_cycles : int or None
        The link's packet timeout; None: :data:`LINK_TIMEOUT_SECONDS` worth of cycles.
    registered_ram_outputs : bool
        As :class:`~eventconv.hw.engine.EventConvEngine`, and the host link's buffer read
        through a register too (:class:`~eventconv.hw.host_link.HostLink`,
        ``registered_buffer``); on for the ECP5 boards.

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
                 window=2, timeout_cycles=None, registered_ram_outputs=False):
        if not isinstance(config, Config):
            raise TypeError(f"config must be an eventconv.config.Config, not {config!r}")
        uart_divisor(clock_frequency, baud_rate)
        if timeout_cycles is None:
            timeout_cycles = int(clock_frequency * LINK_TIMEOUT_SECONDS)
        self.config = config
        self.clock_frequency, self.baud_rate = clock_frequency, baud_rate
        self.receiver = UARTReceiver(clock_frequency=clock_frequency, baud_rate=baud_rate)
        self.transmitter = UARTTransmitter(clock_frequency=clock_frequency,
                                           baud_rate=baud_rate)
        self.link = HostLink(config=config, chunk=chunk, window=window,
                             timeout_cycles=timeout_cycles,
                             clock_frequency=int(round(clock_frequency)),
                             registered_buffer=registered_ram_outputs)
        self.engine = EventConvEngine(config, registered_ram_outputs=registered_ram_outputs)
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
            engine.shift.eq(link.shift),
            engine.dense.eq(link.dense),
            link.frame_events_in.eq(engine.frame_events_in),
            link.frame_macs.eq(engine.frame_macs),
            link.frame_events_out.eq(engine.frame_events_out),
            link.frame_cycles.eq(engine.frame_cycles),
        ]
        wiring.connect(m, link.send, transmitter.send)
        wiring.connect(m, link.pixels, engine.pixels)
        # The link stops taking events in CONFIG's cycle; the engine resets in the next, so
        # the events it offers then (of frames CONFIG dropped) are not taken either. The
        # feeder is idle then (CONFIG waits for it): no pixel beat is lost.
        m.d.comb += [
            link.events.payload.eq(engine.events.payload),
            link.events.valid.eq(engine.events.valid & ~engine_reset),
            engine.events.ready.eq(link.events.ready & ~engine_reset),
        ]
        return m


class EventConvBoard(wiring.Component):
    """A whole board: :class:`BoardCore` clocked by a PLL, on the USB serial pins.

    Parameters
    ----------
    board : str
        A key of :data:`BOARDS`.
    config : :class:`eventconv.config.Config` or None
        None: :func:`default_config`.
    clock_frequency : float or None
        Engine clock to aim for (the PLL gives the nearest it can); None: the board's.
    baud_rate : int

    Attributes
    ----------
    clock_frequency : float
        The clock the PLL really gives: timing is checked against it.
    """

    def __init__(self, board, config=None, *, clock_frequency=None,
                 baud_rate=DEFAULT_BAUD_RATE):
        if board not in BOARDS:
            raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
        self.spec = spec = BOARDS[board]
        self.config = default_config(board) if config is None else config
        target = spec.clock_frequency if clock_frequency is None else clock_frequency
        pll = ice40_pll_parameters if spec.family == "ice40" else ecp5_pll_parameters
        self.pll_parameters, self.clock_frequency = pll(spec.oscillator_frequency, target)
        # The ECP5's block RAMs take 5.8 ns from clock to output in nextpnr's model: their
        # read data goes into flip-flops first. The iCE40 does better without that stage.
        self.core = BoardCore(self.config, clock_frequency=self.clock_frequency,
                              baud_rate=baud_rate,
                              registered_ram_outputs=spec.family == "ecp5")
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        spec = self.spec
        # Asynchronous reset (asserted while the PLL is not locked, released on a clock edge
        # by the synchroniser): it reaches the flip-flops' reset pins, not their logic.
        m.domains.sync = sync = ClockDomain("sync", async_reset=True)
        # nextpnr derives the PLL output's clock constraint from the PLL's settings.
        pll_clock = Signal()
        m.d.comb += sync.clk.eq(pll_clock)
        locked = Signal()
        if spec.family == "ice40":
            pin = platform.request(spec.oscillator, dir="-")
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE",
                **{f"p_{k}": v for k, v in self.pll_parameters.items()},
                i_PACKAGEPIN=pin.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=pll_clock, o_LOCK=locked)
        else:
            oscillator = io.Buffer("i", platform.request(spec.oscillator, dir="-"))
            m.submodules.oscillator = oscillator
            p = self.pll_parameters
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{spec.oscillator_frequency / 1e6:g}",
                a_FREQUENCY_PIN_CLKOP=f"{self.clock_frequency / 1e6:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
                p_OUTDIVIDER_MUXB="DIVB", p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
                p_CLKI_DIV=p["CLKI_DIV"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["CLKOP_DIV"],
                p_CLKOP_CPHASE=p["CLKOP_CPHASE"], p_CLKOP_FPHASE=p["CLKOP_FPHASE"],
                p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=p["CLKFB_DIV"],
                i_RST=0, i_STDBY=0, i_CLKI=oscillator.i, i_CLKFB=pll_clock,
                i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
                i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=pll_clock, o_LOCK=locked)
        m.submodules.reset = ResetSynchronizer(~locked, domain="sync")

        m.submodules.core = core = self.core
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = uart_rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = uart_tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(uart_rx.i), uart_tx.o.eq(core.tx)]

        # A free-running counter: its bit ``blink_bit`` toggles at about 1.4 Hz. The error LED
        # stays lit for 2 to 3 quarters of that period (a short counter: no long carry chain).
        blink_bit = max(2, int(self.clock_frequency / 1.4).bit_length() - 2)
        blink = Signal(blink_bit + 1)
        quarter = Signal()
        error_lit = Signal()
        error_age = Signal(2)
        m.d.sync += [blink.eq(blink + 1), quarter.eq(blink[blink_bit - 2])]
        with m.If(core.error):
            m.d.sync += [error_lit.eq(1), error_age.eq(0)]
        with m.Elif(blink[blink_bit - 2] & ~quarter):
            m.d.sync += error_age.eq(error_age + 1)
            with m.If(error_age == 2):
                m.d.sync += error_lit.eq(0)
        m.submodules.alive_led = alive = io.Buffer("o", platform.request(*spec.alive_led,
                                                                          dir="-"))
        m.submodules.error_led = error = io.Buffer("o", platform.request(*spec.error_led,
                                                                          dir="-"))
        m.d.comb += [alive.o.eq(blink[blink_bit]), error.o.eq(error_lit)]
        return m
