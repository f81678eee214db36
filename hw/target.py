"""What a target FPGA family wants from the gateware, in one object.

The blocks are written once; a :class:`Target` says where they put extra registers for a
family's memories and multipliers. Results never change with the target, only a cycle or two
of latency per frame (each block's docstring says where).
"""

from dataclasses import dataclass

from eventconv.core.ranges import ConfigTypeError

__all__ = ["Target", "GENERIC", "ICE40", "ECP5", "TARGETS", "target_named", "checked_target"]


@dataclass(frozen=True)
class Target:
    """What one FPGA family wants from the gateware.

    Attributes
    ----------
    name : str
        ``generic``, ``ice40`` or ``ecp5``.
    ram_read_register : bool
        Every block RAM read port feeds exactly one register with no reset, at a cycle of
        latency where it needs one, so that the flow can move the register into the RAM
        (the ECP5's DP16KD takes 5.83 ns from clock to data in nextpnr's model, 0.96 ns with
        its output register: :mod:`eventconv.flow.ecp5_outreg`).
    multiplier_registers : bool
        Each accumulate multiplier gets a stage of its own, registered on both sides (on an
        ECP5 platform the MULT18X18D's own input and output registers: 3.9 ns through it).
    spram_accumulators : bool
        The accumulators are in single-port RAM (the iCE40 UP5K's SPRAM).
    pool_read_port : bool
        The accumulator banks have a read port of the pool's own (a second read port: on an
        FPGA whose block RAM has one read and one write port, a replica of each bank), so the
        pool evaluates the windows no later event can touch while the frame still runs,
        instead of all of them after its end (:class:`~eventconv.hw.layer.sparse_max_pool.
        SparseMaxPool`). The board builds go without: on the ECP5 it doubles the accumulators'
        block RAM (PNet's four layers would no longer fit the ULX3S) and the ULX3S default
        then reached 92-93 MHz of its 125 (README); the UP5K's SPRAM has one port only.
    """

    name: str
    ram_read_register: bool = False
    multiplier_registers: bool = False
    spram_accumulators: bool = False
    pool_read_port: bool = False

    @property
    def registered_reader(self):
        """The pool reads the accumulators through the update pipeline's data registers
        (``read.take``, :class:`~eventconv.hw.layouts.AccumulatorReadSignature`
        ``registered``): RAM read registers, and no read port of the pool's own (whose RAM
        output register is the pool's alone)."""
        return self.ram_read_register and not self.pool_read_port


#: No extra registers, and the pool's own read port: exported Verilog, simulation. The iCE40
#: does better without the registers too.
GENERIC = Target("generic", pool_read_port=True)
ICE40 = Target("ice40", spram_accumulators=True)
ECP5 = Target("ecp5", ram_read_register=True, multiplier_registers=True)
TARGETS = {target.name: target for target in (GENERIC, ICE40, ECP5)}


def target_named(name):
    """The :class:`Target` called ``name`` (a key of :data:`TARGETS`)."""
    if name not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {name!r}")
    return TARGETS[name]


def checked_target(target):
    """``target`` if it is a :class:`Target`, else a TypeError naming the parameter."""
    if not isinstance(target, Target):
        raise ConfigTypeError(f"target must be an eventconv.hw.target.Target (one of "
                              f"{', '.join(TARGETS)}), not {target!r}")
    return target
