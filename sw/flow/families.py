"""What the build flow does per FPGA family: Yosys options, nextpnr's device, the resources
a report lists, the bitstream's name, the netlist pass between synthesis and place and route.
(What a family wants from the gateware itself is :mod:`eventconv.hw.target`.)"""

from dataclasses import dataclass

from eventconv.flow.ecp5_outreg import absorb_file
from eventconv.flow.verilog import ECP5_PRIMITIVES, ICE40_PRIMITIVES

__all__ = ["FamilyFlow", "FAMILIES", "MemoryLibrary"]


@dataclass(frozen=True)
class MemoryLibrary:
    """How Yosys's ``memory_libmap`` maps memories on a family (:mod:`eventconv.flow.resources`),
    from Yosys's own library files: the block RAM (bel, cost per block, its (width, depth)
    modes), the distributed RAM (bel, cost, mode) if any, and the cost of a bit in logic."""

    block: str
    block_cost: int
    block_modes: tuple
    distributed: str = None
    distributed_cost: int = 0
    distributed_mode: tuple = ()
    ram_bit_cost: float = 1.0
    rom_bit_cost: float = 1 / 16
    # What a block RAM costs beyond its cells: memory_libmap's emulation of the read port's
    # behaviour (read-during-write, enables), which depends on the port; fitted to what Yosys
    # chose on the builds in tests/test_synth.py and a 4-layer network (README).
    block_extra: float = 0.0
    # The bel of the single-port RAM blocks a :class:`~eventconv.hw.primitives.single_port_ram.
    # SinglePortRam` instantiates on this family, if any (else it maps as any memory).
    single_port: str = None


@dataclass(frozen=True)
class FamilyFlow:
    """Attributes
    ----------
    synth_options : str
        Extra options of the family's Yosys ``synth_*`` command.
    nextpnr : str, nextpnr_device : tuple of str
        nextpnr's tool variable (:data:`eventconv.flow.tools.TOOLS`) and device options (for a
        block placed alone, :mod:`eventconv.flow.timing`; board builds take them from the
        platform).
    resources : tuple of (label, nextpnr bel)
        What a report lists.
    memory : MemoryLibrary
        How its memories map (for estimates before synthesis).
    dsp, logic : str
        The bels of a multiplier and of the logic count an estimate gives.
    bitstream : str
        The bitstream file a board build writes.
    netlist_pass : callable or None
        Run on Yosys's JSON netlist before place and route; returns ``(done, skipped)``.
    primitives : object or None
        The platform a block placed alone is elaborated for, so that it instantiates the
        family's primitives as a board build does (board builds use the real platform).
    """

    synth_command: str
    synth_options: str
    nextpnr: str
    nextpnr_device: tuple
    resources: tuple
    bitstream: str
    memory: MemoryLibrary
    dsp: str
    logic: str
    netlist_pass: object = None
    primitives: object = None


FAMILIES = {
    # Multiplies into SB_MAC16; a clock enable only where 4+ flip-flops share it (fewer
    # distinct enables per logic block: the nearly full UP5K then places at all).
    "ice40": FamilyFlow(
        "synth_ice40", "-dsp -dffe_min_ce_use 4", "NEXTPNR_ICE40",
        ("--up5k", "--package", "sg48", "--pcf-allow-unconstrained"),
        (("logic cells (LUT4 + FF)", "ICESTORM_LC"), ("block RAM (4 kbit)", "ICESTORM_RAM"),
         ("SPRAM (256 kbit)", "ICESTORM_SPRAM"), ("DSP (16 x 16 MAC)", "ICESTORM_DSP"),
         ("PLL", "ICESTORM_PLL"), ("I/O", "SB_IO")),
        "top.bin",
        # brams.txt: SB_RAM40_4K, 4 kbit, 2/4/8/16 bits wide, cost 64.
        MemoryLibrary("ICESTORM_RAM", 64, ((2, 2048), (4, 1024), (8, 512), (16, 256)),
                      single_port="ICESTORM_SPRAM"),
        "ICESTORM_DSP", "ICESTORM_LC", primitives=ICE40_PRIMITIVES),
    # The RAMs' output registers take the flip-flops behind them (nextpnr: 0.96 instead of
    # 5.83 ns from clock to data), which the gateware leaves for them (target ``ecp5``).
    "ecp5": FamilyFlow(
        "synth_ecp5", "", "NEXTPNR_ECP5",
        ("--85k", "--package", "CABGA381", "--speed", "6", "--lpf-allow-unconstrained"),
        (("LUT4", "TRELLIS_COMB"), ("flip-flops", "TRELLIS_FF"),
         ("block RAM (18 kbit)", "DP16KD"), ("distributed RAM (LUT)", "TRELLIS_RAMW"),
         ("DSP (18 x 18 multiplier)", "MULT18X18D"), ("PLL", "EHXPLLL"),
         ("I/O", "TRELLIS_IO")),
        "top.bit",
        # brams_16kd.txt: DP16KD, 18 kbit, cost 128 (36 bits wide as PDPW16KD, one port each
        # way, which every memory here has); lutrams_trellis.txt: 16 x 4 LUT RAM, cost 4.
        MemoryLibrary("DP16KD", 128, ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024),
                                       (36, 512)), "TRELLIS_RAMW", 4, (4, 16),
                      # 63-word queues 23-24 bits wide went to LUT RAM, 25 bits to a DP16KD:
                      # the block's extra lies between 6 and 23.5.
                      block_extra=12),
        "MULT18X18D", "TRELLIS_COMB", absorb_file, ECP5_PRIMITIVES),
}
