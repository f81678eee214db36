"""The board registry: one record per supported board, read by the board top, the CLI, the
build flow, the timing tool and the Makefile (``eventconv boards``).

==========  =================  ==========  =======  ========================  ==========  =======
board       device             oscillator  clock    USB serial (FPGA rx, tx)  LEDs        uploads
==========  =================  ==========  =======  ========================  ==========  =======
icebreaker  iCE40UP5K-SG48     12 MHz      42 MHz   FT2232H channel B: 6, 9   green, red  no
ulx3s-85f   LFE5U-85F-6BG381C  25 MHz      125 MHz  FT231X: M1, L4            LED 0, 1    yes
==========  =================  ==========  =======  ========================  ==========  =======

The alive LED blinks at about 1.4 Hz (the clock runs); the error LED lights for about 0.3 s
after each ERROR answer. Measured clocks and resources per board are in the README.
"""

import importlib
from dataclasses import dataclass

from eventconv.core.kernels import filter_bank_config
from eventconv.hw.board.pll import pll_parameters
from eventconv.hw.target import TARGETS

__all__ = ["BoardSpec", "BOARDS", "board_named", "default_config"]


@dataclass(frozen=True)
class BoardSpec:
    """Everything eventconv knows of one board.

    Attributes
    ----------
    name : str
        The board's name on the command line.
    platform : str
        Its amaranth-boards platform class, ``"module:Class"``.
    family : str
        FPGA family, a key of :data:`eventconv.hw.target.TARGETS`.
    oscillator, oscillator_frequency
        The platform's clock resource and its frequency (Hz).
    clock_frequency : float
        The engine clock the PLL makes (Hz), the target timing is checked against.
    alive_led, error_led : tuple
        Platform resources ``(name, number)`` of the two status LEDs.
    pin_file, constraints : str
        The pin file the platform writes, and its committed copy under ``constraints/``.
    frame_size : tuple
        The default layer's frame ``(height, width)`` (:meth:`default_config`).
    lanes : int
        Its accumulate lanes.
    capacity : dict
        What the device has, by nextpnr bel (the estimates before synthesis check against it;
        a synthesis report gives the same totals).
    uploads : bool
        Built for uploads (:mod:`eventconv.protocol.upload`): weights in RAM, written at run
        time over the link, so one bitstream serves any weights of its shape. The UP5K has no
        room for it at its default layer (its logic cells and block RAM are full).
    seeds : tuple
        nextpnr seeds 1-5 in the order a build tries them until one meets the clock: the one
        that met it in the last measured build first (README), so a build takes one place
        and route where it can.
    nextpnr_options : tuple
        Further nextpnr options of the board's builds (its placer, for one).
    """

    name: str
    platform: str
    family: str
    oscillator: str
    oscillator_frequency: float
    clock_frequency: float
    alive_led: tuple
    error_led: tuple
    pin_file: str
    constraints: str
    frame_size: tuple
    lanes: int
    capacity: dict
    uploads: bool = True
    seeds: tuple = (1, 2, 3, 4, 5)
    nextpnr_options: tuple = ()

    @property
    def target(self):
        """What the board's family wants from the gateware (:mod:`eventconv.hw.target`)."""
        return TARGETS[self.family]

    def create_platform(self):
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(module), cls)()

    def default_config(self):
        """The layer the board is built with when no configuration is given: the filter bank
        (:func:`eventconv.core.kernels.filter_bank_config`), K = 3, Cout = 8."""
        return filter_bank_config(*self.frame_size, lanes=self.lanes)

    @property
    def pll_frequency(self):
        """The engine clock the board's PLL really makes (Hz): the nearest to
        ``clock_frequency`` its dividers give."""
        return pll_parameters(self.family, self.oscillator_frequency, self.clock_frequency)[1]


# Default layers. iCEBreaker: the bundled clip's 64 x 48, its accumulators in the UP5K's four
# SPRAM blocks (two lanes, each a 32-bit RAM of two blocks: one accumulate op per clock, see
# SpramAccumulatorUnit); in block RAM no frame above 22 x 22 fits. ULX3S 85F:
# 64 x 64 fits its block RAM easily; 8 lanes (one output channel each) make a bank 1024 words,
# one block RAM deep, so no RAM-depth multiplexer follows the RAMs, which its clock needs.
# Pixels per cycle stay 1: the UART, not the engine, limits a board's frame rate.
BOARDS = {
    "icebreaker": BoardSpec(
        "icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40",
        "clk12", 12e6, 42e6, ("led_g", 0), ("led_r", 0), "top.pcf", "icebreaker.pcf",
        frame_size=(48, 64), lanes=2,
        capacity={"ICESTORM_LC": 5280, "ICESTORM_RAM": 30, "ICESTORM_SPRAM": 4,
                  "ICESTORM_DSP": 8},
        uploads=False, seeds=(4, 2, 5, 1, 3), nextpnr_options=("--placer", "static")),
    "ulx3s-85f": BoardSpec(
        "ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5",
        "clk25", 25e6, 125e6, ("led", 0), ("led", 1), "top.lpf", "ulx3s.lpf",
        frame_size=(64, 64), lanes=8,
        capacity={"TRELLIS_COMB": 83640, "DP16KD": 208, "TRELLIS_RAMW": 10455,
                  "MULT18X18D": 156},
        seeds=(3, 1, 2, 4, 5)),
}


def board_named(name):
    """The :class:`BoardSpec` of ``name``, or ValueError listing the boards."""
    if name not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {name!r}")
    return BOARDS[name]


def default_config(board="icebreaker"):
    """The default layer of the board called ``board`` (:meth:`BoardSpec.default_config`)."""
    return board_named(board).default_config()
