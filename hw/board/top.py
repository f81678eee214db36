"""A whole board: :class:`~eventconv.hw.board.core.BoardCore` clocked by a PLL from the
board's oscillator, a reset held until the PLL locks, the USB serial pins and two status LEDs
(boards: :mod:`eventconv.hw.boards`)."""

from amaranth.hdl import ClockDomain, Instance, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer

from eventconv.hw.board.core import BoardCore
from eventconv.hw.board.pll import pll_parameters
from eventconv.hw.boards import board_named
from eventconv.protocol.constants import DEFAULT_BAUD_RATE

__all__ = ["EventConvBoard"]


class EventConvBoard(wiring.Component):
    """A whole board: :class:`BoardCore` clocked by a PLL, on the USB serial pins.

    Parameters
    ----------
    board : str
        A key of :data:`eventconv.hw.boards.BOARDS`.
    config : :class:`eventconv.core.config.Config` or None
        None: the board's default layer.
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
        self.spec = spec = board_named(board)
        self.config = spec.default_config() if config is None else config
        target = spec.clock_frequency if clock_frequency is None else clock_frequency
        self.pll_parameters, self.clock_frequency = pll_parameters(
            spec.family, spec.oscillator_frequency, target)
        self.core = BoardCore(self.config, clock_frequency=self.clock_frequency,
                              baud_rate=baud_rate, target=spec.target, uploads=spec.uploads)
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
